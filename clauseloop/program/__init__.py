"""The contract QA program (a DSPy RAG module), its CUAD metrics and the LLM judge (see issue: QA program)."""
