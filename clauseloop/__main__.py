from clauseloop.cli import main

main()
