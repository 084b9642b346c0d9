"""The Hunter → Dynamics 365 lead push: domain code shared by the function app's triggers.

Only the trigger modules (`http_api`, `worker`) import `azure.functions`; everything else takes
plain objects so it can be tested without a Functions host.
"""
