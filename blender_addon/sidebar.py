"""The "Neural Face" tab of the 3D viewport's sidebar (N), shared by the panels_* modules."""


class SidebarPanel:
    """Mixin placing a panel in the tab; bl_order sets the panels' order (Dataset, Train, Preview)."""

    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Neural Face"
