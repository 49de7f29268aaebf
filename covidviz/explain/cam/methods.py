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
# Changes whenever a method's maps change for the same model: saved per-map records (the checks' progress files)
# of an earlier revision are not reused. 2: Grad-CAM++ and XGrad-CAM weigh rectified activations.
MAPS_REVISION = 2


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
