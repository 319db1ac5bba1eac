"""The OpenAPI 3.1 document, generated from the schema the champion was trained on.

Each feature appears with its type, range or categories and whether it may be
null, so a client generator (or a fuzzer) knows exactly what a valid record is.
"""

from __future__ import annotations

from typing import Any

from setpoint.config.spec import ServingSpec, Task
from setpoint.registry.feedback import LabelRule
from setpoint.serve.router import ROLES
from setpoint.serve.scorer import Scorer, example_record

__all__ = ["openapi_document"]

_ERRORS = {
    "400": "Malformed JSON, or JSON of the wrong shape",
    "401": "A key is needed",
    "403": "The key is not valid",
    "404": "Not found",
    "409": "Conflicts with stored state",
    "413": "Body or batch too large",
    "415": "Not application/json",
    "422": "Records that break the schema; each bad field named",
    "503": "No champion loaded yet",
}
_ADMIN_ERRORS = {
    **_ERRORS,
    "404": "No such model version",
    "409": "The current state or the spec refuses it (nothing to roll back to)",
    "422": "The version's stored files are not a model that loads",
    "503": "The store cannot be read, or an artifact fails its sha256 check",
}


def _error_schema() -> dict[str, Any]:
    detail = {
        "type": "object",
        "properties": {
            "record": {"type": ["integer", "null"]},
            "field": {"type": ["string", "null"]},
            "kind": {"type": "string"},
            "detail": {"type": "string"},
        },
        "required": ["kind", "detail"],
    }
    return {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["status", "kind", "message"],
                "properties": {
                    "status": {"type": "integer"},
                    "kind": {"type": "string"},
                    "message": {"type": "string"},
                    "request_id": {"type": ["string", "null"]},
                    "errors": {"type": "array", "items": detail},
                },
            }
        },
    }


def _record_schema(scorer: Scorer, serving: ServingSpec) -> dict[str, Any]:
    validator = scorer.validator
    schema = validator.schema
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name in validator.features:
        col = schema.column(name)
        prop: dict[str, Any]
        if col.kind == "numeric":
            prop = {"type": ["number", "null"] if col.nullable else "number"}
            if col.min is not None:
                prop["minimum"] = col.min
            if col.max is not None:
                prop["maximum"] = col.max
        else:
            # numbers are categories too (3 and 3.0 become "3", as in training)
            kinds = ["string", "number"]
            prop = {"type": [*kinds, "null"] if col.nullable else kinds}
            strict = serving.on_invalid == "reject" and serving.unseen_category == "reject"
            if col.categories is not None and strict:
                prop["enum"] = [*col.categories, *([None] if col.nullable else [])]
            elif col.categories is not None:  # others are accepted: known ones as a hint
                prop["examples"] = list(col.categories[:50])
        properties[name] = prop
        if not col.nullable:
            required.append(name)
    for name in schema.names:  # id, time, target: accepted, not used by the model
        if name not in properties:
            properties[name] = {"description": "Not a model input; logged, not used."}
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": serving.on_invalid == "impute",
        "example": example_record(schema, validator.features),
    }


def _prediction_schema(task: Task) -> dict[str, Any]:
    props: dict[str, Any] = {
        "flags": {"type": "array", "items": {"type": "object"}},
        "contributions": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"feature": {"type": "string"}, "value": {"type": "number"}},
            },
        },
    }
    if task is Task.REGRESSION:
        props["value"] = {"type": "number"}
        return {"type": "object", "properties": props, "required": ["value"]}
    props["label"] = {}
    if task is Task.BINARY:
        props["score"] = {"type": "number", "minimum": 0, "maximum": 1}
    else:
        props["scores"] = {"type": "object", "additionalProperties": {"type": "number"}}
    return {"type": "object", "properties": props, "required": ["label"]}


def _responses(ok: str, *codes: str, words: dict[str, str] = _ERRORS) -> dict[str, Any]:
    out: dict[str, Any] = {"200": {"description": "OK", "content": _json(ok)}}
    for code in codes:
        out[code] = {"description": words[code], "content": _json("Error")}
    return out


def _admin_paths() -> dict[str, Any]:
    """promote, rollback and reload: always keyed, whatever ``serving.predict_auth`` says."""
    keyed: list[dict[str, list[str]]] = [{"apiKey": []}]
    # 400 also for a body that is not JSON; 413 and 415 only for one that is sent
    codes = ("400", "401", "403", "413", "415", "503")

    def operation(summary: str, ok: str, body: str | None, *more: str) -> dict[str, Any]:
        found: dict[str, Any] = {
            "summary": summary,
            "security": keyed,
            "responses": _responses(ok, *codes, *more, words=_ADMIN_ERRORS),
        }
        if body is not None:
            found["requestBody"] = {"required": body == "PromoteRequest", "content": _json(body)}
        return {"post": found}

    return {
        "/v1/admin/promote": operation(
            "Gate a version and make it champion if it passes (or if forced)",
            "PromoteResponse",
            "PromoteRequest",
            "404",
            "409",
            "422",
        ),
        "/v1/admin/rollback": operation(
            "Give the champion back to the version that held it before",
            "RollbackResponse",
            "RollbackRequest",
            "409",
        ),
        "/v1/admin/reload": operation("Look at the aliases now", "ReloadResponse", None),
    }


def _admin_schemas() -> dict[str, Any]:
    serving = {
        "type": "object",
        "properties": {role: {"type": ["integer", "null"]} for role in ROLES},
    }
    return {
        "PromoteRequest": {
            "type": "object",
            "required": ["version"],
            "additionalProperties": False,
            "properties": {
                "version": {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1},
                "reason": {"type": ["string", "null"], "pattern": "^[^\\u0000]*$"},
                "force": {"type": ["boolean", "null"]},
            },
        },
        "PromoteResponse": {
            "type": "object",
            "required": ["promoted", "forced", "decision", "serving"],
            "properties": {
                "promoted": {"type": "boolean"},
                "forced": {"type": "boolean"},
                "decision": {"type": "object"},
                "serving": serving,
            },
        },
        "RollbackRequest": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"reason": {"type": ["string", "null"], "pattern": "^[^\\u0000]*$"}},
        },
        "RollbackResponse": {
            "type": "object",
            "required": ["champion", "serving"],
            "properties": {"champion": {"type": "integer"}, "serving": serving},
        },
        "ReloadResponse": {
            "type": "object",
            "required": ["serving"],
            "properties": {"serving": serving},
        },
    }


def _json(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}


def _label_schema(rule: LabelRule) -> dict[str, Any]:
    """Exactly the labels the server takes for the champion's target (``LabelRule``)."""
    values = rule.json_values()
    if values is None:
        return {"type": "number"}  # JSON has no NaN or Infinity: every number is finite
    return {"enum": values}


def openapi_document(
    *, project: str, scorer: Scorer, serving: ServingSpec, version: str
) -> dict[str, Any]:
    """The document for ``scorer``'s model (regenerated when the champion changes)."""
    keyed = serving.predict_auth == "key"
    auth: list[dict[str, list[str]]] = [{"apiKey": []}] if keyed else []
    open_codes = ("400", "413", "415", "422", "503", *(("401", "403") if keyed else ()))
    feedback_auth: list[dict[str, list[str]]] = [{"apiKey": []}] if serving.feedback_keyed else []
    feedback_codes = (
        "400",
        "409",
        "413",
        "415",
        "422",
        *(("401", "403") if serving.feedback_keyed else ()),
    )
    text = "^[^\\u0000]*$"  # PostgreSQL cannot store NUL in text
    label = _label_schema(LabelRule.of(scorer.model))
    # RFC 3339 times from 1900 on: a year-1 time with a positive offset has no UTC
    # equivalent, so the document promises only what the server can store
    when = {
        "type": ["string", "null"],  # null: the time it arrives
        "format": "date-time",
        "pattern": (
            r"^(19|2[0-9])[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])"
            r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"
            r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
        ),
    }
    by_request = {
        "type": "object",
        "properties": {
            "request_id": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"},
            "index": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
            "label": label,
            "time": when,
        },
        "required": ["request_id", "label"],
        "additionalProperties": False,
    }
    by_entity = {
        "type": "object",
        "properties": {
            "entity_id": {
                "type": ["string", "integer"],
                "minLength": 1,
                "maxLength": 256,
                "pattern": text,
            },
            "label": label,
            "time": when,
        },
        "required": ["entity_id", "label"],
        "additionalProperties": False,
    }
    feedback_item = {"oneOf": [by_request, by_entity]}
    # Each item is judged on its own: one of another shape is answered in "rejected" while
    # the others are stored, so a request is valid when at least one item is a FeedbackItem
    # (with none, it is refused whole: 422).
    any_item = {"description": "A FeedbackItem; an item of another shape is listed in 'rejected'."}
    predict = {
        "summary": "Score records",
        "parameters": [
            {"name": "explain", "in": "query", "schema": {"type": "boolean"}},
            {
                "name": "X-Request-ID",
                "in": "header",
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"},
            },
        ],
        "requestBody": {"required": True, "content": _json("PredictRequest")},
        "responses": _responses("PredictResponse", *open_codes),
        "security": auth,
    }
    feedback = {
        "summary": "Store true outcomes",
        "requestBody": {"required": True, "content": _json("FeedbackRequest")},
        "responses": _responses("FeedbackResponse", *feedback_codes),
        "security": feedback_auth,
    }
    simple = {"type": "object"}
    return {
        "openapi": "3.1.0",
        "info": {"title": f"setpoint: {project}", "version": version},
        "paths": {
            "/v1/predict": {"post": predict},
            "/v1/feedback": {"post": feedback},
            "/v1/models": {"get": {"summary": "Models", "responses": _responses("Object")}},
            "/healthz": {"get": {"summary": "Liveness", "responses": _responses("Object")}},
            "/readyz": {"get": {"summary": "Readiness", "responses": _responses("Object", "503")}},
            **_admin_paths(),
        },
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Record": _record_schema(scorer, serving),
                "PredictRequest": {
                    "type": "object",
                    "required": ["records"],
                    "additionalProperties": False,
                    "properties": {
                        "records": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": serving.max_batch,
                            "items": {"$ref": "#/components/schemas/Record"},
                        }
                    },
                },
                "Prediction": _prediction_schema(scorer.model.task),
                "PredictResponse": {
                    "type": "object",
                    "required": ["request_id", "model_version", "predictions"],
                    "properties": {
                        "request_id": {"type": "string"},
                        "model_version": {"type": "integer"},
                        "predictions": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Prediction"},
                        },
                    },
                },
                "FeedbackRequest": {
                    "type": "object",
                    "required": ["feedback"],
                    "additionalProperties": False,
                    "properties": {
                        "feedback": {
                            "type": "array",
                            "minItems": 1,
                            "items": any_item,
                            "contains": {"$ref": "#/components/schemas/FeedbackItem"},
                        }
                    },
                },
                "FeedbackItem": feedback_item,
                "FeedbackResponse": {
                    "type": "object",
                    "required": ["stored", "duplicates", "conflicts", "rejected"],
                    "properties": {
                        "stored": {"type": "integer"},
                        "duplicates": {"type": "integer"},
                        "conflicts": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["record", "key", "stored", "sent"],
                                "properties": {
                                    "record": {"type": "integer"},
                                    "key": {"type": "string"},
                                    "stored": {},
                                    "sent": label,
                                },
                            },
                        },
                        "rejected": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["record", "errors"],
                                "properties": {
                                    "record": {"type": ["integer", "null"]},
                                    "errors": {"type": "array", "items": {"type": "object"}},
                                },
                            },
                        },
                    },
                },
                **_admin_schemas(),
                "Object": simple,
                "Error": _error_schema(),
            },
        },
    }
