"""Statistics for comparing model versions: pure functions on numbers, no I/O.

rates (clustered ratio estimator, Horvitz–Thompson) → contrast (new vs prev) →
sequential (always-valid bounds, e-values) → multiplicity (BH, e-BH) → health (SRM,
multiple exposure) → verdict (per type and guardrail, overall decision).
"""

from analytics.stats.config import ComparisonSettings
from analytics.stats.contrast import (
    Alternative,
    contrast,
    contrast_e_value,
    difference_interval,
    relative_change_interval,
)
from analytics.stats.exceptions import StatsInputError
from analytics.stats.health import (
    HealthCheck,
    check_health,
    multiple_exposure_share,
    srm_p_value,
)
from analytics.stats.multiplicity import (
    benjamini_hochberg,
    e_benjamini_hochberg,
    p_value_from_e_value,
)
from analytics.stats.rates import (
    ClusterSums,
    HTTotal,
    RateEstimate,
    horvitz_thompson_rate,
    horvitz_thompson_total,
    ratio_rate,
    ratio_rate_from_users,
)
from analytics.stats.sequential import (
    Interval,
    Side,
    boundary_multiplier,
    confidence_sequence,
    e_value,
    mixture_rho2,
)
from analytics.stats.verdict import (
    ArmRates,
    Comparison,
    Decision,
    Direction,
    MetricResult,
    Verdict,
    compare_versions,
)

__all__ = [
    "Alternative",
    "ArmRates",
    "ClusterSums",
    "Comparison",
    "ComparisonSettings",
    "Decision",
    "Direction",
    "HTTotal",
    "HealthCheck",
    "Interval",
    "MetricResult",
    "RateEstimate",
    "Side",
    "StatsInputError",
    "Verdict",
    "benjamini_hochberg",
    "boundary_multiplier",
    "check_health",
    "compare_versions",
    "confidence_sequence",
    "contrast",
    "contrast_e_value",
    "difference_interval",
    "e_benjamini_hochberg",
    "e_value",
    "horvitz_thompson_rate",
    "horvitz_thompson_total",
    "mixture_rho2",
    "multiple_exposure_share",
    "p_value_from_e_value",
    "ratio_rate",
    "ratio_rate_from_users",
    "relative_change_interval",
    "srm_p_value",
]
