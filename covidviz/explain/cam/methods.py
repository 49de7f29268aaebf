"""CAM method names and their properties (no torch import: the page's controls need only these)."""

FAST_METHOD = "Grad-CAM"  # served by the hook-free one-pass path in covidviz.explain.cam.fast_gradcam
SCALES = ("per map", "shared across classes")

# Display name -> pytorch-grad-cam class name; the library is imported on first use.
METHODS: dict[str, str] = {
    "Grad-CAM": "GradCAM",
    "Grad-CAM++": "GradCAMPlusPlus",
    "XGrad-CAM": "XGradCAM",
    "LayerCAM": "LayerCAM",
    "HiResCAM": "HiResCAM",
    "EigenCAM": "EigenCAM",
    "Ablation-CAM": "AblationCAM",
    "Score-CAM": "ScoreCAM",
}
# Score-CAM runs one masked forward pass per feature channel (1024), so its time follows the model's cost: seconds
# per map measured on 2 CPU cores, by architecture and input size. Ablation-CAM ablates channels at the last
# feature layer, so only the head reruns: well under a second.
SECONDS_PER_MAP: dict[str, dict[tuple[str, int], int]] = {
    "Score-CAM": {("densenet121", 128): 25, ("densenet121_os16", 256): 110,  # os16: 108.5-113.9 s, 2026-12-04
                  ("densenet121_os8", 128): 48}}  # the shipped v3: 47.5 s, 2026-12-05
SLOW_METHODS = set(SECONDS_PER_MAP)
# The methods whose maps changed for the same model, by revision of how maps are drawn (revision 1: as the library
# draws them). Saved per-map records of an earlier revision are not reused, and a report made at one says which of
# its rows describe maps no longer drawn.
MAP_CHANGES: dict[int, tuple[str, ...]] = {2: ("Grad-CAM++", "XGrad-CAM")}  # 2: they weigh rectified activations
MAPS_REVISION = max(MAP_CHANGES)


def changed_since(revision: int) -> list[str]:
    """The methods whose maps changed after ``revision``, in the order of :data:`METHODS`."""
    changed = {m for r, methods in MAP_CHANGES.items() if r > revision for m in methods}
    return [m for m in METHODS if m in changed]


def revision_warning(report: dict, remedy: str) -> str | None:
    """What a page says over a heatmap check made at an earlier revision (a report without one is revision 1);
    None when its maps are the ones drawn now."""
    changed = changed_since(int(report.get("maps_revision", 1)))
    if not changed:
        return None
    rows = "their rows describe" if len(changed) > 1 else "its row describes"
    return (f"These results were computed before the maps of {' and '.join(changed)} changed (they now weigh only the "
            f"activations the classifier reads): {rows} maps this dashboard no longer draws. "
            f"{remedy[:1].upper()}{remedy[1:]} again.")


def time_estimate(method: str, architecture: str = "densenet121", input_size: int = 128) -> str:
    """What the page tells a user before a slow method runs, for the model in use; a model never timed gets the
    first measurement scaled by its input's pixels."""
    measured = SECONDS_PER_MAP[method]
    if (architecture, input_size) in measured:
        return f"about {measured[architecture, input_size]} s per map on 2 CPU cores"
    (reference, size), seconds = next(iter(measured.items()))
    return (f"roughly {round(seconds * (input_size / size) ** 2)} s per map on 2 CPU cores (scaled from {reference} "
            f"at {size} px)")
CLASS_AGNOSTIC = {"EigenCAM"}  # first principal component of the activations: the same map for every class
