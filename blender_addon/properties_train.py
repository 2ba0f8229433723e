"""Train settings and the running job's state (`scene.neural_face_train`). Progress lives here so the
panel redraws it like any property."""

import os

import bpy

from .properties_dataset import dataset_folder

DEFAULT_BANK_NAME = "bank.nfbank"


class NEURALFACE_PG_train(bpy.types.PropertyGroup):
    bank_path: bpy.props.StringProperty(
        name="Weight Bank", subtype="FILE_PATH",
        description="Bank file to write (Train) and shade with (Preview); empty: bank.nfbank in the dataset folder")
    steps: bpy.props.IntProperty(name="Steps", default=0, min=0, max=10_000_000,
                                 description="Training steps; 0 uses the trainer's default")
    job_id: bpy.props.StringProperty()
    state: bpy.props.StringProperty(description="running, reporting, done, failed or cancelled")
    progress: bpy.props.FloatProperty(min=0.0, max=1.0, subtype="FACTOR")
    step: bpy.props.IntProperty()
    total_steps: bpy.props.IntProperty()
    loss: bpy.props.FloatProperty()
    val_psnr: bpy.props.FloatProperty(description="Validation PSNR in dB (0 until measured)")
    eta_s: bpy.props.FloatProperty()
    message: bpy.props.StringProperty(description="Headline numbers when done, the error when failed")
    report_path: bpy.props.StringProperty(subtype="FILE_PATH")

    def resolved_bank(self, scene) -> str:
        """The bank path as set, else bank.nfbank in the dataset folder; '' when neither is known."""
        if self.bank_path:
            return bpy.path.abspath(self.bank_path)
        dataset = dataset_folder(scene)
        return os.path.join(dataset, DEFAULT_BANK_NAME) if dataset else ""


def register():
    bpy.utils.register_class(NEURALFACE_PG_train)
    bpy.types.Scene.neural_face_train = bpy.props.PointerProperty(type=NEURALFACE_PG_train)


def unregister():
    del bpy.types.Scene.neural_face_train
    bpy.utils.unregister_class(NEURALFACE_PG_train)
