"""Dataset settings shown in the Neural Face panel, stored on the scene (`scene.neural_face_dataset`).

Defaults come from DatasetSettings, so the panel, the operator and the CLI agree; `to_settings`
turns the panel's values into that plain object. Progress of a running job lives on the window
manager, where it is not saved with the file.
"""

import os

import bpy
from bpy.props import (BoolProperty, EnumProperty, FloatProperty, FloatVectorProperty, IntProperty,
                       IntVectorProperty, PointerProperty, StringProperty)

from .dataset_settings import FRONT_AXES, MAX_LIGHTS, MAX_RESOLUTION, DatasetSettings

_DEFAULTS = DatasetSettings()


def _range(setting, label, description, minimum=-1e6, maximum=1e6):
    """A (min, max) pair property with the DatasetSettings default of `setting`."""
    return FloatVectorProperty(name=label, description=description, size=2, default=getattr(_DEFAULTS, setting),
                               min=minimum, max=maximum)


def _is_mesh(_self, obj):
    return obj.type == "MESH"


def dataset_folder(scene) -> str:
    """The Dataset panel's output folder, absolute; '' when unset. Train and the preview read it too."""
    folder = scene.neural_face_dataset.output_dir
    return bpy.path.abspath(folder) if folder else ""


class NEURALFACE_PG_dataset(bpy.types.PropertyGroup):
    output_dir: StringProperty(name="Output Folder", subtype="DIR_PATH", default="//neural_face_dataset",
                               description="Dataset folder; an unfinished dataset with the same settings resumes")
    target: PointerProperty(name="Target", type=bpy.types.Object, poll=_is_mesh,
                            description="Face mesh to render (empty: the scene's largest mesh)")
    samples: IntProperty(name="Samples", default=_DEFAULTS.samples, min=1, soft_max=5000,
                         description="Number of random views (camera + lights) to render")
    unlabelled: IntProperty(name="Unlabelled Views", default=2 * _DEFAULTS.samples, min=0, soft_max=20000,
                            description="Extra views with a G-buffer only (no path-traced ground truth); training "
                                        "labels them with its teacher network")
    resolution: IntVectorProperty(name="Resolution", size=2, default=_DEFAULTS.resolution, min=1,
                                  max=MAX_RESOLUTION, description="Width and height in pixels")
    gt_samples: IntProperty(name="Ground Truth Samples", default=_DEFAULTS.gt_samples, min=1, soft_max=4096,
                            description="Cycles samples per pixel of the path-traced ground truth")
    gt_denoise: BoolProperty(name="Denoise", default=_DEFAULTS.gt_denoise,
                             description="Denoise the ground truth with OpenImageDenoise")
    gbuffer_shadow_rays: IntProperty(name="Shadow Rays", default=_DEFAULTS.gbuffer_shadow_rays, min=4, soft_max=64,
                                     description="Shadow rays per light in a penumbra pixel of the traced G-buffer "
                                                 "(a square number: a stratified grid over the light)")
    front_axis: EnumProperty(name="Face Front", default=_DEFAULTS.front_axis,
                             items=[(axis, axis, f"The face looks along {axis}") for axis in FRONT_AXES])
    camera_distance: _range("camera_distance", "Camera Distance",
                            "Camera distance range, in bounding radii of the target", minimum=1.01)
    camera_elevation_deg: _range("camera_elevation_deg", "Camera Elevation",
                                 "Camera elevation range above the face's front (degrees)", minimum=-89, maximum=89)
    camera_azimuth_deg: _range("camera_azimuth_deg", "Camera Azimuth",
                               "Camera azimuth range around the face's front (degrees)")
    lights: IntVectorProperty(name="Lights", size=2, default=_DEFAULTS.lights, min=1, max=MAX_LIGHTS,
                              description="Minimum and maximum number of point lights per sample")
    light_distance: _range("light_distance", "Light Distance",
                           "Light distance range from the centre, in bounding radii", minimum=0.01)
    light_elevation_deg: _range("light_elevation_deg", "Light Elevation", "Light elevation range (degrees)",
                                minimum=-90, maximum=90)
    light_azimuth_deg: _range("light_azimuth_deg", "Light Azimuth",
                              "Light azimuth range around the face's front (degrees)")
    light_power: _range("light_power", "Light Power", "Light power range in W per bounding radius squared",
                        minimum=0.001)
    light_radius: _range("light_radius", "Light Radius", "Light radius range in bounding radii (0: hard shadows)",
                         minimum=0)
    light_color_saturation: _range("light_color_saturation", "Light Color Saturation",
                                   "Light colour saturation range (0: white)", minimum=0, maximum=1)
    seed: IntProperty(name="Seed", default=_DEFAULTS.seed, min=0, description="Random seed of views and split")
    split_val: FloatProperty(name="Validation", default=_DEFAULTS.split["val"], min=0, max=1,
                             description="Fraction of samples held out for validation")
    split_test: FloatProperty(name="Test", default=_DEFAULTS.split["test"], min=0, max=1,
                              description="Fraction of samples held out for testing")

    def to_settings(self, target_name: str) -> DatasetSettings:
        pairs = {name: tuple(getattr(self, name)) for name in (
            "camera_distance", "camera_elevation_deg", "camera_azimuth_deg", "light_distance",
            "light_elevation_deg", "light_azimuth_deg", "light_power", "light_radius", "light_color_saturation")}
        return DatasetSettings(
            scene=os.path.abspath(bpy.data.filepath) if bpy.data.filepath else "<unsaved>",
            object=target_name, resolution=tuple(self.resolution), samples=self.samples,
            unlabelled=self.unlabelled, seed=self.seed,
            gt_samples=self.gt_samples, gt_denoise=self.gt_denoise,
            gbuffer_shadow_rays=self.gbuffer_shadow_rays, front_axis=self.front_axis,
            lights=tuple(self.lights), **pairs,
            split={"train": round(1 - self.split_val - self.split_test, 6), "val": self.split_val,
                   "test": self.split_test})


CLASSES = (NEURALFACE_PG_dataset,)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.neural_face_dataset = PointerProperty(type=NEURALFACE_PG_dataset)
    bpy.types.WindowManager.neural_face_dataset_progress = FloatProperty(min=0, max=1, subtype="FACTOR")
    bpy.types.WindowManager.neural_face_dataset_status = StringProperty()


def unregister():
    del bpy.types.WindowManager.neural_face_dataset_status
    del bpy.types.WindowManager.neural_face_dataset_progress
    del bpy.types.Scene.neural_face_dataset
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
