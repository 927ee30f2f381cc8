"""Hand-written query expansions for the 41 CUAD categories: the "extra terms" a DSPy program may later learn.

Each hint has ``terms`` (words and phrases that clauses of the category use, for BM25), an ``example`` (a typical
clause of the category, for the dense side: embeddings of clause-like text match clauses better than a question
does), and a ``lead_weight`` (how strongly the category lives near the top of a contract: names, parties, dates).
They were written from contract-drafting conventions and tuned on the TRAIN split only; they name no contract.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CategoryHint:
    terms: str
    example: str = ""
    lead_weight: float = 0.0


_TOP = 1.0  # categories answered in the preamble of a contract

CATEGORY_HINTS: dict[str, CategoryHint] = {
    "document name": CategoryHint(
        "agreement contract title exhibit amendment",
        "DISTRIBUTION AGREEMENT", _TOP,
    ),
    "parties": CategoryHint(
        "between by and among party parties inc llc ltd corporation company hereinafter referred to as",
        'This Agreement is made by and between ABC Inc., a Delaware corporation ("Company"), and XYZ LLC ("Supplier").',
        _TOP,
    ),
    "agreement date": CategoryHint(
        "dated as of made entered into this day of date january february march april may june july august "
        "september october november december",
        "This Agreement is entered into as of January 1, 2010.", _TOP,
    ),
    "effective date": CategoryHint(
        "effective date effective as of commence commencement shall become effective date hereof",
        'This Agreement shall be effective as of March 1, 2012 (the "Effective Date").', _TOP,
    ),
    "expiration date": CategoryHint(
        "term initial term expire expiration shall continue in full force until years from effective date",
        "The initial term of this Agreement shall commence on the Effective Date and expire five years thereafter.",
    ),
    "renewal term": CategoryHint(
        "renew renewal automatically renewed successive additional periods extend extension term",
        "This Agreement shall automatically renew for successive one year terms unless either party gives notice.",
    ),
    "notice period to terminate renewal": CategoryHint(
        "notice non-renewal not to renew days prior expiration written notice intention renewal term",
        "Either party may elect not to renew by giving written notice at least ninety days prior to expiration.",
    ),
    "governing law": CategoryHint(
        "governed construed accordance laws state governing law jurisdiction",
        "This Agreement shall be governed by and construed in accordance with the laws of the State of New York.",
    ),
    "most favored nation": CategoryHint(
        "most favored favorable terms no less favorable better lower price than other customers comparable",
        "If Supplier offers any customer more favorable prices or terms, Supplier shall offer the same to Buyer.",
    ),
    "non-compete": CategoryHint(
        "compete competing competitive products business engage directly indirectly non-competition competitor "
        "similar products competes",
        "During the term, Distributor shall not directly or indirectly manufacture or sell competing products.",
    ),
    "exclusivity": CategoryHint(
        "exclusive exclusively sole solely not appoint any other distributor requirements only from territory "
        "exclusive right exclusive license exclusive provider shall not grant third party",
        "Company appoints Distributor as its exclusive distributor and shall not appoint any other distributor.",
    ),
    "no-solicit of customers": CategoryHint(
        "solicit customers clients induce divert accounts business away",
        "Neither party shall solicit or induce any customer of the other party to cease doing business with it.",
    ),
    "competitive restriction exception": CategoryHint(
        "notwithstanding except exception provided however shall not prevent restrict exclusive compete",
        "Notwithstanding the foregoing, nothing herein shall prevent Company from selling products to existing "
        "customers.",
    ),
    "no-solicit of employees": CategoryHint(
        "solicit hire employ employees personnel recruit offer employment",
        "Neither party shall solicit for employment or hire any employee of the other party during the term.",
    ),
    "non-disparagement": CategoryHint(
        "disparage disparaging negative derogatory statements reputation",
        "Neither party shall make any disparaging statements about the other party or its products.",
    ),
    "termination for convenience": CategoryHint(
        "terminate termination any time any reason without cause convenience days prior written notice",
        "Either party may terminate this Agreement at any time for any reason upon thirty days written notice.",
    ),
    "rofr/rofo/rofn": CategoryHint(
        "right of first refusal first offer first negotiation option match offer refusal option to purchase "
        "negotiate in good faith exclusive negotiation notice of offer",
        "Company shall have a right of first refusal to purchase the assets on the same terms offered by a third "
        "party.",
    ),
    "change of control": CategoryHint(
        "change of control merger acquisition consolidation acquire substantially all assets voting stock "
        "operation of law",
        "Either party may terminate this Agreement upon a change of control of the other party, including a merger "
        "or sale of all or substantially all of its assets.",
    ),
    "anti-assignment": CategoryHint(
        "assign assignment transfer delegate prior written consent successors assigns",
        "Neither party may assign or transfer this Agreement without the prior written consent of the other party.",
    ),
    "revenue/profit sharing": CategoryHint(
        "royalty royalties percent net sales revenue profits share commission fee",
        "Licensee shall pay Licensor a royalty equal to ten percent of Net Sales of the Products.",
    ),
    "price restrictions": CategoryHint(
        "price prices pricing increase decrease change adjust shall not exceed",
        "Supplier shall not increase the prices of the Products during the first year of the term.",
    ),
    "minimum commitment": CategoryHint(
        "minimum purchase order quantity at least annual units commitment shall purchase minimum annual not less "
        "than minimum quantities purchase commitment",
        "Distributor shall purchase a minimum quantity of Products each calendar year.",
    ),
    "volume restriction": CategoryHint(
        "exceed excess maximum limit threshold additional fees usage number volume exceeds more than in excess "
        "no more than capacity",
        "If usage exceeds the maximum number of units, Customer shall pay additional fees.",
    ),
    "ip ownership assignment": CategoryHint(
        "hereby assigns own ownership right title interest intellectual property inventions work made for hire "
        "property of",
        "All intellectual property developed under this Agreement shall be owned by Company, and Contractor hereby "
        "assigns all right, title and interest therein.",
    ),
    "joint ip ownership": CategoryHint(
        "jointly joint ownership owned co-own jointly developed inventions intellectual property",
        "Any inventions jointly developed by the parties shall be jointly owned by the parties.",
    ),
    "license grant": CategoryHint(
        "hereby grants license licensed right to use non-exclusive sublicense royalty-free",
        "Licensor hereby grants to Licensee a non-exclusive license to use the Licensed Technology.",
    ),
    "non-transferable license": CategoryHint(
        "non-transferable nontransferable non-assignable non-sublicensable license may not sublicense transfer",
        "Licensor grants Licensee a non-exclusive, non-transferable license, without the right to sublicense.",
    ),
    "affiliate license-licensor": CategoryHint(
        "affiliates licensor its affiliates license grant owned controlled intellectual property",
        "Licensor, on behalf of itself and its Affiliates, hereby grants Licensee a license under the patents owned "
        "by Licensor and its Affiliates.",
    ),
    "affiliate license-licensee": CategoryHint(
        "affiliates subsidiaries licensee its affiliates license sublicense grant",
        "Licensor grants to Licensee and its Affiliates a license to use the Software.",
    ),
    "unlimited/all-you-can-eat-license": CategoryHint(
        "unlimited enterprise any number all you can eat without limitation license copies users",
        "Licensee may make an unlimited number of copies of the Software for use by any number of users.",
    ),
    "irrevocable or perpetual license": CategoryHint(
        "irrevocable perpetual fully paid-up royalty-free perpetuity license",
        "Licensor grants Licensee a perpetual, irrevocable, fully paid-up, royalty-free license.",
    ),
    "source code escrow": CategoryHint(
        "source code escrow agent deposit release bankruptcy",
        "Licensor shall deposit the source code with an escrow agent, to be released upon Licensor's bankruptcy.",
    ),
    "post-termination services": CategoryHint(
        "upon termination after termination expiration survive wind-down transition sell inventory return "
        "continue following termination thereafter cease remaining outstanding orders effective date of termination",
        "Upon termination or expiration, Distributor may sell its remaining inventory for six months.",
    ),
    "audit rights": CategoryHint(
        "audit inspect inspection books records examine accountant access right to audit examination "
        "independent accountant normal business hours",
        "Licensor may audit and inspect the books and records of Licensee upon reasonable notice.",
    ),
    "uncapped liability": CategoryHint(
        "shall not apply limitation liability exclusion gross negligence willful misconduct indemnification "
        "confidentiality consequential damages",
        "The limitations of liability shall not apply to a party's indemnification obligations, gross negligence or "
        "willful misconduct.",
    ),
    "cap on liability": CategoryHint(
        "in no event liability shall not exceed aggregate limited amounts paid consequential indirect special "
        "damages maximum liability total liability limitation of liability shall not be liable lost profits",
        "In no event shall either party's aggregate liability exceed the amounts paid under this Agreement.",
    ),
    "liquidated damages": CategoryHint(
        "liquidated damages termination fee penalty shall pay",
        "As liquidated damages and not as a penalty, Company shall pay a termination fee.",
    ),
    "warranty duration": CategoryHint(
        "warranty warrants warranty period months days from delivery defects materials workmanship",
        "Supplier warrants that the Products shall be free from defects for a period of twelve months from "
        "delivery.",
    ),
    "insurance": CategoryHint(
        "insurance insured policy policies coverage liability insurance additional insured maintain",
        "Each party shall maintain commercial general liability insurance and name the other as additional insured.",
    ),
    "covenant not to sue": CategoryHint(
        "contest challenge validity shall not sue bring claim dispute ownership attack",
        "Licensee shall not contest or challenge the validity of Licensor's ownership of the Trademarks.",
    ),
    "third party beneficiary": CategoryHint(
        "third party beneficiary beneficiaries third-party no person other than parties enforce benefit",
        "Nothing in this Agreement confers any rights on any person other than the parties; there are no third "
        "party beneficiaries.",
    ),
}


def hint_for(category: str) -> CategoryHint | None:
    """The hint of a category by name, any case; None for a category without one."""
    return CATEGORY_HINTS.get(category.strip().lower())
