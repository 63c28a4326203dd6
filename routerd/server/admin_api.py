"""The management API's routes: keys, users, budgets and pricing in any-llm-gateway's paths.

Every route needs the master key (`Authorization: Bearer`, `x-api-key` or any-llm's
`X-AnyLLM-Key: Bearer ...`); errors use the management envelope (`{"detail": ..., "error":
{...}}`, see `errors.management_envelope`). Handlers live in `admin_keys.py` and
`admin_users.py`; writes go to the managed files of `state_dir` (`routerd/managed/`).
"""

from __future__ import annotations

from routerd.server import admin_keys, admin_users
from routerd.server.routes import Routes


def add_admin_routes(router: Routes) -> None:
    router.post("/v1/keys", admin_keys.create_key)
    router.get("/v1/keys", admin_keys.list_keys)
    router.get("/v1/keys/{key_id}", admin_keys.get_key)
    router.patch("/v1/keys/{key_id}", admin_keys.update_key)
    router.delete("/v1/keys/{key_id}", admin_keys.delete_key)
    router.post("/v1/users", admin_users.create_user)
    router.get("/v1/users", admin_users.list_users)
    router.get("/v1/users/{user_id}/usage", admin_users.user_usage)
    router.get("/v1/users/{user_id}", admin_users.get_user)
    router.patch("/v1/users/{user_id}", admin_users.update_user)
    router.delete("/v1/users/{user_id}", admin_users.delete_user)
    router.post("/v1/budgets", admin_users.create_budget)
    router.get("/v1/budgets", admin_users.list_budgets)
    router.get("/v1/budgets/{budget_id}", admin_users.get_budget)
    router.patch("/v1/budgets/{budget_id}", admin_users.update_budget)
    router.delete("/v1/budgets/{budget_id}", admin_users.delete_budget)
    router.post("/v1/pricing", admin_keys.set_pricing)
    router.get("/v1/pricing", admin_keys.list_pricing)
    router.get("/v1/pricing/{model_key:.+}", admin_keys.get_pricing)
    router.delete("/v1/pricing/{model_key:.+}", admin_keys.delete_pricing)
