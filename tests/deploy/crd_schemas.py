"""Strict JSON schemas for the Prometheus Operator objects the manifests use.

kubernetes-validate knows only built-in kinds. These schemas follow the operator's
monitoring.coreos.com/v1 CRDs for the fields Switchyard sets, and reject any other field, so a
misspelt key fails CI just as `--strict` does for built-in kinds. Extend them when the manifests
start using another field of the CRD.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

# The operator's duration syntax (e.g. "30s", "1h30m").
DURATION: Schema = {
    "type": "string",
    "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
}
STRING_MAP: Schema = {"type": "object", "additionalProperties": {"type": "string"}}


def closed(properties: dict[str, Schema], required: tuple[str, ...] = ()) -> Schema:
    """An object schema that admits exactly these properties."""
    return {"type": "object", "properties": properties, "required": list(required),
            "additionalProperties": False}


METADATA = closed({"name": {"type": "string"}, "namespace": {"type": "string"},
                   "labels": STRING_MAP, "annotations": STRING_MAP}, ("name",))
LABEL_SELECTOR = closed({
    "matchLabels": STRING_MAP,
    "matchExpressions": {"type": "array", "items": closed({
        "key": {"type": "string"},
        "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
        "values": {"type": "array", "items": {"type": "string"}},
    }, ("key", "operator"))},
})
NAMESPACE_SELECTOR = closed({"any": {"type": "boolean"},
                             "matchNames": {"type": "array", "items": {"type": "string"}}})
RELABELING = closed({
    "sourceLabels": {"type": "array", "items": {"type": "string"}},
    "separator": {"type": "string"},
    "targetLabel": {"type": "string"},
    "regex": {"type": "string"},
    "modulus": {"type": "integer"},
    "replacement": {"type": "string"},
    "action": {"enum": ["replace", "Replace", "keep", "Keep", "drop", "Drop", "hashmod", "HashMod",
                        "labelmap", "LabelMap", "labeldrop", "LabelDrop", "labelkeep", "LabelKeep",
                        "lowercase", "Lowercase", "uppercase", "Uppercase", "keepequal", "KeepEqual",
                        "dropequal", "DropEqual"]},
})
_ENDPOINT_FIELDS: dict[str, Schema] = {
    "port": {"type": "string"},
    "path": {"type": "string"},
    "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
    "interval": DURATION,
    "scrapeTimeout": DURATION,
    "honorLabels": {"type": "boolean"},
    "honorTimestamps": {"type": "boolean"},
    "params": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
    "relabelings": {"type": "array", "items": RELABELING},
    "metricRelabelings": {"type": "array", "items": RELABELING},
}
_MONITOR_FIELDS: dict[str, Schema] = {
    "selector": LABEL_SELECTOR,
    "namespaceSelector": NAMESPACE_SELECTOR,
    "jobLabel": {"type": "string"},
    "podTargetLabels": {"type": "array", "items": {"type": "string"}},
    "sampleLimit": {"type": "integer", "minimum": 0},
}
RULE = closed({
    "record": {"type": "string", "pattern": r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"},
    "alert": {"type": "string", "minLength": 1},
    "expr": {"type": ["string", "integer"]},
    "for": DURATION,
    "keep_firing_for": DURATION,
    "labels": STRING_MAP,
    "annotations": STRING_MAP,
}, ("expr",))
RULE_GROUP = closed({
    "name": {"type": "string", "minLength": 1},
    "interval": DURATION,
    "limit": {"type": "integer"},
    "query_offset": DURATION,
    "rules": {"type": "array", "items": RULE},
}, ("name",))


def _object(kind: str, spec: Schema) -> Schema:
    return closed({"apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": kind},
                   "metadata": METADATA, "spec": spec}, ("apiVersion", "kind", "metadata", "spec"))


SCHEMAS: dict[str, Schema] = {
    "ServiceMonitor": _object("ServiceMonitor", closed({
        **_MONITOR_FIELDS,
        "targetLabels": {"type": "array", "items": {"type": "string"}},
        "endpoints": {"type": "array", "minItems": 1,
                      "items": closed({**_ENDPOINT_FIELDS, "targetPort": {"type": ["string", "integer"]}})},
    }, ("selector", "endpoints"))),
    "PodMonitor": _object("PodMonitor", closed({
        **_MONITOR_FIELDS,
        "podMetricsEndpoints": {"type": "array", "minItems": 1,
                                "items": closed({**_ENDPOINT_FIELDS, "portNumber": {"type": "integer"}})},
    }, ("selector", "podMetricsEndpoints"))),
    "PrometheusRule": _object("PrometheusRule", closed({
        "groups": {"type": "array", "items": RULE_GROUP},
    })),
}
