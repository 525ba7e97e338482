"""Preference data: formats (rows -> pairs), tokenization, batching and the LightningDataModule."""

from .collate import PackedPairCollator, PairCollator
from .datamodule import PreferenceDataModule
from .formats import HHFormat, PairFormat, PreferenceFormat, PreferencePair, SHPFormat
from .options import mixture_data, preference_data
from .problems import ProblemFormat
from .readers import BadRows, DataError, builtin_file, iter_rows, read_json_rows
from .sources import PairSource
from .tokenize import PairTokenizer, TokenizedPair
from .unpaired import UnpairedFormat, UnpairedFromPairs

__all__ = [
    "PackedPairCollator",
    "PairCollator",
    "PreferenceDataModule",
    "builtin_file",
    "BadRows",
    "DataError",
    "HHFormat",
    "PairSource",
    "mixture_data",
    "preference_data",
    "PreferenceFormat",
    "iter_rows",
    "PairFormat",
    "PreferencePair",
    "ProblemFormat",
    "SHPFormat",
    "read_json_rows",
    "PairTokenizer",
    "TokenizedPair",
    "UnpairedFormat",
    "UnpairedFromPairs",
]
