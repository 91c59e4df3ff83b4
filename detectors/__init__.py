"""Pure rule detectors and the risk-weighted sampler (DESIGN.md, "Detectors").

No I/O: the stream layer owns the state table, the users lookup and the sinks,
and calls :func:`apply` per event and :func:`decide` per conversation.
"""

from detectors.config import DetectorSettings
from detectors.pipeline import apply, new_state
from detectors.sampler import SampleDecision, decide, decide_for_state
from detectors.signal import Detector, signal_id
from detectors.state import ConversationEvent, ConversationState

__all__ = [
    "ConversationEvent",
    "ConversationState",
    "Detector",
    "DetectorSettings",
    "SampleDecision",
    "apply",
    "decide",
    "decide_for_state",
    "new_state",
    "signal_id",
]
