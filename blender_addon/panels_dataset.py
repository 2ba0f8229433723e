"""The Dataset panel, first in the sidebar's "Neural Face" tab."""

import bpy

from .sidebar import SidebarPanel


class NEURALFACE_PT_dataset(SidebarPanel, bpy.types.Panel):
    bl_idname = "NEURALFACE_PT_dataset"
    bl_label = "Dataset"
    bl_order = 0

    def draw(self, context):
        layout = self.layout
        props = context.scene.neural_face_dataset
        layout.use_property_split = True
        layout.use_property_decorate = False
        layout.prop(props, "output_dir")
        layout.prop(props, "target")
        layout.prop(props, "front_axis")
        layout.prop(props, "samples")
        layout.prop(props, "unlabelled")
        layout.prop(props, "resolution")
        layout.prop(props, "seed")

        render = layout.column(heading="Ground Truth")
        render.prop(props, "gt_samples", text="Samples")
        render.prop(props, "gt_denoise")
        layout.column(heading="G-Buffer").prop(props, "gbuffer_shadow_rays")  # traced by the backend

        camera = layout.column(heading="Camera")
        for name in ("camera_distance", "camera_elevation_deg", "camera_azimuth_deg"):
            camera.prop(props, name)

        lights = layout.column(heading="Lights")
        for name in ("lights", "light_distance", "light_elevation_deg", "light_azimuth_deg", "light_power",
                     "light_radius", "light_color_saturation"):
            lights.prop(props, name)

        split = layout.column(heading="Split")
        split.prop(props, "split_val")
        split.prop(props, "split_test")

        wm = context.window_manager
        if wm.neural_face_dataset_status:
            layout.progress(factor=wm.neural_face_dataset_progress, text=wm.neural_face_dataset_status)
        layout.operator("neural_face.generate_dataset", icon="RENDER_STILL")


CLASSES = (NEURALFACE_PT_dataset,)


register, unregister = bpy.utils.register_classes_factory(CLASSES)
