"""The 41 CUAD clause categories with their official descriptions.

The catalogue is built in so a fresh clone works offline; `load_categories(csv_path)` reads the official
`category_descriptions.csv` instead when a user has it (and tolerates its `Category: ...` prefixes and
non-breaking spaces).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Category:
    name: str
    description: str
    answer_format: str = ""
    group: str = "-"


BUILTIN_CATEGORIES: tuple[Category, ...] = (
    Category('Document Name', 'The name of the contract', 'Contract Name', '-'),
    Category('Parties', 'The two or more parties who signed the contract', 'Entity or individual names', '-'),
    Category('Agreement Date', 'The date of the contract', 'Date (mm/dd/yyyy)', '1'),
    Category('Effective Date', 'The date when the contract is effective', 'Date (mm/dd/yyyy)', '1'),
    Category('Expiration Date', "On what date will the contract's initial term expire?", 'Date (mm/dd/yyyy) / Perpetual', '1'),
    Category('Renewal Term', 'What is the renewal term after the initial term expires? This includes automatic extensions and unilateral extensions with prior notice.', '[Successive] number of years/months / Perpetual', '1'),
    Category('Notice Period to Terminate Renewal', 'What is the notice period required to terminate renewal?', 'Number of days/months/year(s)', '1'),
    Category('Governing Law', "Which state/country's law governs the interpretation of the contract?", 'Name of a US State / non-US Province, Country', '-'),
    Category('Most Favored Nation', 'Is there a clause that if a third party gets better terms on the licensing or sale of technology/goods/services described in the contract, the buyer of such technology/goods/services under the contract shall be entitled to those better terms?', 'Yes/No', '-'),
    Category('Non-Compete', 'Is there a restriction on the ability of a party to compete with the counterparty or operate in a certain geography or business or technology sector?', 'Yes/No', '2'),
    Category('Exclusivity', 'Is there an exclusive dealing commitment with the counterparty? This includes a commitment to procure all “requirements” from one party of certain technology, goods, or services or a prohibition on licensing or selling technology, goods or services to third parties, or a prohibition on collaborating or working with other parties), whether during the contract or after the contract ends (or both).', 'Yes/No', '2'),
    Category('No-Solicit of Customers', 'Is a party restricted from contracting or soliciting customers or partners of the counterparty, whether during the contract or after the contract ends (or both)?', 'Yes/No', '2'),
    Category('Competitive Restriction Exception', 'This category includes the exceptions or carveouts to Non-Compete, Exclusivity and No-Solicit of Customers above.', 'Yes/No', '2'),
    Category('No-Solicit of Employees', 'Is there a restriction on a party’s soliciting or hiring employees and/or contractors from the counterparty, whether during the contract or after the contract ends (or both)?', 'Yes/No', '-'),
    Category('Non-Disparagement', 'Is there a requirement on a party not to disparage the counterparty?', 'Yes/No', '-'),
    Category('Termination for Convenience', 'Can a party terminate this contract without cause (solely by giving a notice and allowing a waiting period to expire)?', 'Yes/No', '-'),
    Category('Rofr/Rofo/Rofn', 'Is there a clause granting one party a right of first refusal, right of first offer or right of first negotiation to purchase, license, market, or distribute equity interest, technology, assets, products or services?', 'Yes/No', '-'),
    Category('Change of Control', 'Does one party have the right to terminate or is consent or notice required of the counterparty if such party undergoes a change of control, such as a merger, stock sale, transfer of all or substantially all of its assets or business, or assignment by operation of law?', 'Yes/No', '3'),
    Category('Anti-Assignment', 'Is consent or notice required of a party if the contract is assigned to a third party?', 'Yes/No', '3'),
    Category('Revenue/Profit Sharing', 'Is one party required to share revenue or profit with the counterparty for any technology, goods, or services?', 'Yes/No', '-'),
    Category('Price Restrictions', 'Is there a restriction on the ability of a party to raise or reduce prices of technology, goods, or services provided?', 'Yes/No', '-'),
    Category('Minimum Commitment', 'Is there a minimum order size or minimum amount or units per-time period that one party must buy from the counterparty under the contract?', 'Yes/No', '-'),
    Category('Volume Restriction', 'Is there a fee increase or consent requirement, etc. if one party’s use of the product/services exceeds certain threshold?', 'Yes/No', '-'),
    Category('IP Ownership Assignment', 'Does intellectual property created by one party become the property of the counterparty, either per the terms of the contract or upon the occurrence of certain events?', 'Yes/No', '-'),
    Category('Joint IP Ownership', 'Is there any clause providing for joint or shared ownership of intellectual property between the parties to the contract?', 'Yes/No', '-'),
    Category('License Grant', 'Does the contract contain a license granted by one party to its counterparty?', 'Yes/No', '4'),
    Category('Non-Transferable License', 'Does the contract limit the ability of a party to transfer the license being granted to a third party?', 'Yes/No', '4'),
    Category('Affiliate License-Licensor', 'Does the contract contain a license grant by affiliates of the licensor or that includes intellectual property of affiliates of the licensor?', 'Yes/No', '4'),
    Category('Affiliate License-Licensee', 'Does the contract contain a license grant to a licensee (incl. sublicensor) and the affiliates of such licensee/sublicensor?', '', '4'),
    Category('Unlimited/All-You-Can-Eat-License', 'Is there a clause granting one party an “enterprise,” “all you can eat” or unlimited usage license?', 'Yes/No', '4'),
    Category('Irrevocable or Perpetual License', 'Does the contract contain a license grant that is irrevocable or perpetual?', 'Yes/No', '4'),
    Category('Source Code Escrow', 'Is one party required to deposit its source code into escrow with a third party, which can be released to the counterparty upon the occurrence of certain events (bankruptcy, insolvency, etc.)?', 'Yes/No', '-'),
    Category('Post-Termination Services', 'Is a party subject to obligations after the termination or expiration of a contract, including any post-termination transition, payment, transfer of IP, wind-down, last-buy, or similar commitments?', 'Yes/No', '5'),
    Category('Audit Rights', 'Does a party have the right to audit the books, records, or physical locations of the counterparty to ensure compliance with the contract?', 'Yes/No', '5'),
    Category('Uncapped Liability', 'Is a party’s liability uncapped upon the breach of its obligation in the contract? This also includes uncap liability for a particular type of breach such as IP infringement or breach of confidentiality obligation.', 'Yes/No', '6'),
    Category('Cap on Liability', 'Does the contract include a cap on liability upon the breach of a party’s obligation? This includes time limitation for the counterparty to bring claims or maximum amount for recovery.', 'Yes/No', '6'),
    Category('Liquidated Damages', 'Does the contract contain a clause that would award either party liquidated damages for breach or a fee upon the termination of a contract (termination fee)?', 'Yes/No', '-'),
    Category('Warranty Duration', 'What is the duration of any warranty against defects or errors in technology, products, or services provided under the contract?', 'Number of months or years', '-'),
    Category('Insurance', 'Is there a requirement for insurance that must be maintained by one party for the benefit of the counterparty?', 'Yes/No', '-'),
    Category('Covenant Not to Sue', 'Is a party restricted from contesting the validity of the counterparty’s ownership of intellectual property or otherwise bringing a claim against the counterparty for matters unrelated to the contract?', 'Yes/No', '-'),
    Category('Third Party Beneficiary', 'Is there a non-contracting party who is a beneficiary to some or all of the clauses in the contract and therefore can enforce its rights against a contracting party?', 'Yes/No', '-'),
)

QUESTION_TEMPLATE = (
    'Highlight the parts (if any) of this contract related to "{name}" that should be reviewed by a lawyer. '
    "Details: {description}"
)
_QUESTION_CATEGORY = re.compile(r'related to "(?P<name>[^"]+)"')


def clean_field(value: str, prefix: str = "") -> str:
    """Strip an official CSV prefix such as ``Category:`` and normalize whitespace (the CSV has NBSPs)."""
    value = value.replace("\xa0", " ")
    if prefix and value.startswith(prefix + ":"):
        value = value[len(prefix) + 1 :]
    return re.sub(r"\s+", " ", value).strip()


def load_categories(csv_path: str | Path | None = None) -> tuple[Category, ...]:
    """The category catalogue: built in, or read from the official ``category_descriptions.csv``."""
    if csv_path is None:
        return BUILTIN_CATEGORIES
    path = Path(csv_path)
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows or len(rows[0]) < 2:
        raise ValueError(f"{path}: expected the official category CSV with Category and Description columns")
    categories = []
    for line_no, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < 2:
            raise ValueError(f"{path}:{line_no}: expected at least 2 columns (category, description), got {row!r}")
        padded = row + ["", ""]
        categories.append(
            Category(
                name=clean_field(padded[0], "Category"),
                description=clean_field(padded[1], "Description"),
                answer_format=clean_field(padded[2], "Answer Format"),
                group=clean_field(padded[3], "Group") or "-",
            )
        )
    return tuple(categories)


CATEGORY_NAMES: tuple[str, ...] = tuple(c.name for c in BUILTIN_CATEGORIES)
_BY_NAME = {c.name: c for c in BUILTIN_CATEGORIES}


def get_category(name: str) -> Category:
    """Look a category up by its official name (case-insensitive)."""
    found = _BY_NAME.get(name) or next((c for c in BUILTIN_CATEGORIES if c.name.lower() == name.lower()), None)
    if found is None:
        raise KeyError(f"unknown CUAD category {name!r}; known categories: {', '.join(CATEGORY_NAMES)}")
    return found


def canonical_name(name: str, categories: tuple[Category, ...] = BUILTIN_CATEGORIES) -> str:
    """The catalogue spelling of a category; CUAD's own files title-case some ("Cap On Liability")."""
    folded = name.strip().lower()
    return next((c.name for c in categories if c.name.lower() == folded), name.strip())


def question_for(category: Category) -> str:
    """The question text CUAD asks for a category."""
    return QUESTION_TEMPLATE.format(name=category.name, description=category.description)


def category_from_question(question: str) -> str | None:
    """The category named in a CUAD question text, or None for a free-form question."""
    match = _QUESTION_CATEGORY.search(question)
    return match.group("name") if match else None
