"""The add-on's pure-Python core: pricing, HTTP client, sync worker and state. Never imports bpy."""
