"""Class activation maps: a hook-free fast Grad-CAM (``fast_gradcam``) and pytorch-grad-cam's methods on
private model copies (``library``); ``scaling`` brings maps to the image, ``methods`` names them.

Neither registers hooks on the shared model, so concurrent sessions cannot see each other's maps.
"""
