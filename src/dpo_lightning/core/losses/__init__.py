"""The preference-loss family: one class per loss under `PreferenceLoss`; each has one yaml in conf/loss/."""

from .base import LossOutput, PairLogps, PreferenceLoss
from .dpo import (
    AOTLoss,
    AOTUnpairedLoss,
    DiscoPOPLoss,
    DPOLoss,
    HingeLoss,
    IPOLoss,
    RobustLoss,
    RPOLoss,
    SigmoidNormLoss,
)
from .fdivergence import FDivergenceLoss
from .kto import KTOLoss
from .mixture import MixtureLoss
from .pointwise import APODownLoss, APOZeroLoss, BCOPairLoss, EXOPairLoss, NCAPairLoss, SPPOHardLoss
from .reference_free import ORPOLoss, SFTLoss, SimPOLoss
from .wrappers import LengthDesensitizedLoss, WeightedPairLoss, WrappedLoss

__all__ = [
    "LossOutput",
    "PairLogps",
    "PreferenceLoss",
    "DPOLoss",
    "HingeLoss",
    "IPOLoss",
    "RobustLoss",
    "RPOLoss",
    "SigmoidNormLoss",
    "DiscoPOPLoss",
    "AOTLoss",
    "AOTUnpairedLoss",
    "FDivergenceLoss",
    "KTOLoss",
    "MixtureLoss",
    "LengthDesensitizedLoss",
    "WeightedPairLoss",
    "WrappedLoss",
    "APODownLoss",
    "APOZeroLoss",
    "BCOPairLoss",
    "EXOPairLoss",
    "NCAPairLoss",
    "SPPOHardLoss",
    "ORPOLoss",
    "SFTLoss",
    "SimPOLoss",
]
