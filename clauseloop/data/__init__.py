"""CUAD data: typed records, loaders for every official layout, the category catalogue, splits and stats."""

from clauseloop.data.categories import (
    BUILTIN_CATEGORIES,
    CATEGORY_NAMES,
    Category,
    canonical_name,
    category_from_question,
    get_category,
    load_categories,
    question_for,
)
from clauseloop.data.loaders import CuadFormatError, demo_path, load_cuad, load_hub, parse_hub_rows, parse_squad
from clauseloop.data.records import ClauseQuestion, Contract, CuadDataset, Span
from clauseloop.data.split import SplitConfig, split_dataset, split_of
from clauseloop.data.text import NotATextContract, contract_text, read_contract_file

__all__ = [
    "BUILTIN_CATEGORIES", "CATEGORY_NAMES", "Category", "canonical_name", "category_from_question", "get_category", "load_categories",
    "question_for", "CuadFormatError", "demo_path", "load_cuad", "load_hub", "parse_hub_rows", "parse_squad",
    "ClauseQuestion", "Contract", "CuadDataset", "Span", "SplitConfig", "split_dataset", "split_of",
    "NotATextContract", "contract_text", "read_contract_file",
]
