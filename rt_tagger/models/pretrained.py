"""The pretrained models shipped in ``rt_tagger/weights``: names only, no torch.

They are registered here, apart from their architectures, so that the onnxruntime runtime can
find a model's checkpoint (and its cached ONNX graph) by name without importing torch. For
each architecture the first entry is its default (``create_model(arch, pretrained=True)``).
"""
from __future__ import annotations

from .registry import register_pretrained

register_pretrained("musicnn.mtat", arch="musicnn", filename="musicnn_mtat.safetensors",
                    description="original MTT_musicnn (musicnn 0.1.0), MagnaTagATune top-50 tags")
register_pretrained("musicnn.msd", arch="musicnn", filename="musicnn_msd.safetensors",
                    description="original MSD_musicnn (musicnn 0.1.0), Million Song Dataset top-50 tags")
register_pretrained("musicnn_vgg.mtat", arch="musicnn_vgg", filename="musicnn_vgg_mtat.safetensors",
                    description="original MTT_vgg (musicnn 0.1.0), MagnaTagATune top-50 tags")
# Distilled from musicnn.mtat on the corpus (rt_tagger/weights/README.md); rt-tagger's default.
register_pretrained("musicnn_att.mtat", arch="musicnn_att", filename="musicnn_att_mtat.safetensors",
                    description="musicnn.mtat's body + attention back-end distilled from it; "
                                "rt-tagger's default; MagnaTagATune top-50 tags")
# Distilled from musicnn.mtat on ~18 h of real audio (rt_tagger/weights/README.md); the
# default for create_model("spec_att", pretrained=True) and rt-tagger's previous default.
register_pretrained("spec_att.w256", arch="spec_att", filename="spec_att_w256.safetensors",
                    description="Spec_Att width 256 distilled from musicnn.mtat; rt-tagger's "
                                "previous default; MagnaTagATune top-50 tags")
