"""Pure rule detectors and the risk-weighted sampler (docs/architecture.md, "Detectors").

No I/O: the stream layer owns the state table, the users lookup and the sinks,
and calls :func:`apply` per event and :func:`decide` per conversation; an
:class:`EventOrder` per conversation hands events over in event order.
"""

from detectors.config import DetectorSettings
from detectors.order import Admission, EventOrder, event_key
from detectors.pipeline import apply, new_state
from detectors.sampler import SampleDecision, decide, decide_for_state
from detectors.signal import Detector, signal_id
from detectors.state import ConversationEvent, ConversationState

__all__ = [
    "Admission",
    "ConversationEvent",
    "ConversationState",
    "Detector",
    "DetectorSettings",
    "EventOrder",
    "SampleDecision",
    "apply",
    "decide",
    "decide_for_state",
    "event_key",
    "new_state",
    "signal_id",
]
