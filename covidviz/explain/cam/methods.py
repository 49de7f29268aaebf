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
# Score-CAM runs one masked forward pass per feature channel (1024); the seconds per map were measured on
# 2 CPU cores. Ablation-CAM ablates channels at the last feature layer, so only the head reruns: well under a second.
SECONDS_PER_MAP: dict[str, int] = {"Score-CAM": 25}
SLOW_METHODS = set(SECONDS_PER_MAP)


def time_estimate(method: str) -> str:
    """What the page tells a user before a slow method runs."""
    return f"about {SECONDS_PER_MAP[method]} s per map on 2 CPU cores"
CLASS_AGNOSTIC = {"EigenCAM"}  # first principal component of the activations: the same map for every class
