"""PhysioLatent ComfyUI nodes: one module per stage, each node a thin shell over physiolatent_core."""

NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}
