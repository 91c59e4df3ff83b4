"""Statistics for comparing model versions: pure functions on numbers, no I/O.

rates (clustered ratio estimator, Horvitz–Thompson) → strata (rollout steps combined)
→ contrast (new vs prev, sized by the smaller arm) → sequential (always-valid bounds,
e-values) and counts (exact always-valid test on event counts) → multiplicity (BH,
e-BH) → health (SRM, multiple exposure) → verdict (per type and guardrail, overall
decision).
"""

from analytics.stats.config import ComparisonSettings
from analytics.stats.contrast import (
    Alternative,
    contrast,
    contrast_e_value,
    difference_interval,
    relative_change_interval,
)
from analytics.stats.counts import CountSide, binomial_mixture_log_e, stratified_count_e_value
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
from analytics.stats.strata import (
    StratifiedSums,
    effective_units,
    stratified_rate,
    stratum_weights,
)
from analytics.stats.verdict import (
    ArmRates,
    Comparison,
    Decision,
    Direction,
    LabelCoverage,
    MetricResult,
    StratumCounts,
    Verdict,
    compare_versions,
    expected_events,
)

__all__ = [
    "Alternative",
    "CountSide",
    "LabelCoverage",
    "StratifiedSums",
    "StratumCounts",
    "binomial_mixture_log_e",
    "effective_units",
    "expected_events",
    "stratified_count_e_value",
    "stratified_rate",
    "stratum_weights",
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
