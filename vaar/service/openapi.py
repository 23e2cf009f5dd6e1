"""The OpenAPI 3.1 description of the service, served at /api/openapi.json."""

from __future__ import annotations


def _error(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _job(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Analysis"}}},
    }


_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "description": "server-generated analysis id",
    "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
}
_COMMON = {"401": _error("missing or wrong bearer token"), "429": _error("rate limit")}
_FOUND = {"404": _error("no analysis with this id"), **_COMMON}
_READY = {"409": _error("the analysis has not finished successfully"), **_FOUND}


def openapi_spec(version: str) -> dict:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "vaar analysis service",
            "version": version,
            "description": (
                "Upload a table of questionnaire answers (one row per respondent, one column per "
                "item, one group column); the service fits the multi-group SEM in lavaan in a "
                "separate R worker, scores VAAR when the instruments are known, and serves the "
                "HTML report, estimates.json and a zip bundle."
            ),
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/analyses": {
                "post": {
                    "summary": "Queue an analysis",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "multipart/form-data": {
                                "schema": {"$ref": "#/components/schemas/Upload"}
                            }
                        },
                    },
                    "responses": {
                        "202": _job("queued; poll the Location"),
                        "400": _error("malformed request or CSV"),
                        "413": _error("upload over the size limit"),
                        "415": _error("data is not a CSV/TSV text file"),
                        "422": _error("invalid model, study config, or unknown column"),
                        "503": _error("queue full or R unavailable; retry later"),
                        **_COMMON,
                    },
                },
                "get": {
                    "summary": "The 100 most recent analyses",
                    "responses": {"200": {"description": "list of analyses"}, **_COMMON},
                },
            },
            "/api/analyses/{job_id}": {
                "parameters": [_ID],
                "get": {
                    "summary": "Status, progress and errors of one analysis",
                    "responses": {"200": _job("the analysis"), **_FOUND},
                },
                "delete": {
                    "summary": "Cancel a queued or running analysis; delete a finished one",
                    "responses": {
                        "200": _job("cancelled"),
                        "204": {"description": "deleted with its files"},
                        **_FOUND,
                    },
                },
            },
            "/api/analyses/{job_id}/report": {
                "parameters": [_ID],
                "get": {
                    "summary": "The self-contained HTML report",
                    "responses": {
                        "200": {"description": "HTML", "content": {"text/html": {}}},
                        **_READY,
                    },
                },
            },
            "/api/analyses/{job_id}/estimates": {
                "parameters": [_ID],
                "get": {
                    "summary": "estimates.json (schema: vaar/report/estimates.schema.json)",
                    "responses": {
                        "200": {"description": "JSON", "content": {"application/json": {}}},
                        **_READY,
                    },
                },
            },
            "/api/analyses/{job_id}/bundle": {
                "parameters": [_ID],
                "get": {
                    "summary": "Zip of the report directory, reproduction bundle and input",
                    "responses": {
                        "200": {"description": "zip", "content": {"application/zip": {}}},
                        **_READY,
                    },
                },
            },
            "/api/health": {
                "get": {
                    "summary": "Liveness, queue length and R workers (no token needed)",
                    "security": [],
                    "responses": {"200": {"description": "health"}},
                }
            },
            "/api/session": {
                "post": {
                    "summary": "Exchange the token for an HttpOnly cookie (used by the page)",
                    "security": [],
                    "requestBody": {
                        "content": {
                            "application/x-www-form-urlencoded": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"token": {"type": "string"}},
                                }
                            }
                        }
                    },
                    "responses": {"200": {"description": "cookie set"}, "401": _error("wrong")},
                }
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "status"],
                    "properties": {"error": {"type": "string"}, "status": {"type": "integer"}},
                },
                "Upload": {
                    "type": "object",
                    "required": ["data"],
                    "properties": {
                        "data": {
                            "type": "string",
                            "contentMediaType": "text/csv",
                            "description": "CSV or TSV, header row, one row per respondent",
                        },
                        "group": {
                            "type": "string",
                            "default": "model",
                            "description": "column holding the group (LLM) label",
                        },
                        "model": {
                            "type": "string",
                            "description": "lavaan model syntax (instead of a study config)",
                        },
                        "study": {
                            "type": "string",
                            "description": "study TOML; its instruments and analysis settings "
                            "are used. Without model or study, complete instruments are "
                            "detected from the column names.",
                        },
                    },
                },
                "Analysis": {
                    "type": "object",
                    "required": ["id", "status", "progress", "links"],
                    "properties": {
                        "id": {"type": "string"},
                        "status": {
                            "type": "string",
                            "enum": ["queued", "running", "done", "failed", "cancelled"],
                        },
                        "stage": {"type": "string"},
                        "progress": {"type": "number", "minimum": 0, "maximum": 1},
                        "error": {"type": ["string", "null"]},
                        "created": {"type": "string"},
                        "started": {"type": ["string", "null"]},
                        "finished": {"type": ["string", "null"]},
                        "input": {"type": "object"},
                        "summary": {"type": "object"},
                        "links": {"type": "object"},
                    },
                },
            },
        },
    }
