"""Preference data: formats (rows -> pairs), tokenization, batching and the LightningDataModule."""

from .collate import PackedPairCollator, PairCollator
from .datamodule import PreferenceDataModule, builtin_file
from .formats import HHFormat, JsonlFormat, PairFormat, PreferencePair, SHPFormat
from .readers import BadRows, DataError, read_json_rows
from .tokenize import PairTokenizer, TokenizedPair

__all__ = [
    "PackedPairCollator",
    "PairCollator",
    "PreferenceDataModule",
    "builtin_file",
    "BadRows",
    "DataError",
    "HHFormat",
    "JsonlFormat",
    "PairFormat",
    "PreferencePair",
    "SHPFormat",
    "read_json_rows",
    "PairTokenizer",
    "TokenizedPair",
]
