"""The OpenAI-compatible HTTP gateway over the fabric (FastAPI + uvicorn, sse-starlette for streams).

openai / curl ──HTTP──► app (routes, errors) ──► FabricGateway (MQTT: one FabricTaskClient per account)
                              │                         └─► FabricWatcher (live agents: /v1/models, 503)
                              └─► openai_api (pure: request → task, answer/chunks → OpenAI JSON)
auth: Bearer API keys → fabric client accounts (a keys file that provisioning renders); anonymous on loopback
"""
