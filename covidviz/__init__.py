"""covidviz: chest X-ray screening support (COVID-19 / pneumonia / normal) with Grad-CAM.

Decision support for people who read radiographs; not a medical device, not a diagnosis.
"""

CLASSES: tuple[str, ...] = ("covid", "pneumonia", "normal")
CLASS_TITLES: dict[str, str] = {"covid": "COVID-19", "pneumonia": "Pneumonia (not COVID)", "normal": "Normal"}
DISCLAIMER = (
    "Decision support for people who read chest radiographs. Not a medical device and not a diagnosis: "
    "the model was trained on public research images whose classes are confounded with their sources."
)
__version__ = "0.1.0"
