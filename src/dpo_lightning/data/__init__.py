"""Preference data: formats (rows -> pairs), tokenization, batching and the LightningDataModule."""

from .collate import PackedPairCollator, PairCollator
from .datamodule import PreferenceDataModule
from .formats import HHFormat, PairFormat, PreferenceFormat, PreferencePair, SHPFormat
from .mixture import MixtureDataModule
from .readers import BadRows, DataError, builtin_file, iter_rows, read_json_rows
from .tokenize import PairTokenizer, TokenizedPair

__all__ = [
    "PackedPairCollator",
    "PairCollator",
    "PreferenceDataModule",
    "builtin_file",
    "BadRows",
    "DataError",
    "HHFormat",
    "MixtureDataModule",
    "PreferenceFormat",
    "iter_rows",
    "PairFormat",
    "PreferencePair",
    "SHPFormat",
    "read_json_rows",
    "PairTokenizer",
    "TokenizedPair",
]
