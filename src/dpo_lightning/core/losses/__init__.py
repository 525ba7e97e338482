"""The preference-loss family: one class per loss under `PreferenceLoss`; each has one yaml in conf/loss/."""

from .base import LossOutput, PairLogps, PreferenceLoss
from .dpo import DPOLoss, HingeLoss, IPOLoss, RobustLoss, RPOLoss
from .pointwise import APODownLoss, APOZeroLoss, BCOPairLoss, EXOPairLoss, NCAPairLoss, SPPOHardLoss
from .reference_free import ORPOLoss, SFTLoss, SimPOLoss

__all__ = [
    "LossOutput",
    "PairLogps",
    "PreferenceLoss",
    "DPOLoss",
    "HingeLoss",
    "IPOLoss",
    "RobustLoss",
    "RPOLoss",
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
