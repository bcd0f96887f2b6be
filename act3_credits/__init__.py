"""ACT3 Credits: your organisation's ACT3 AI credits inside Blender.

This package doubles as the pure-Python core (`act3_credits.core`) that the service and the CLI
import without Blender, so bpy is only imported when Blender registers the extension.
"""


def register() -> None:
    from .addon import register as register_shell

    register_shell()


def unregister() -> None:
    from .addon import unregister as unregister_shell

    unregister_shell()
