"""Kubernetes' and KFP's rules for the settings a config hands to the cluster, checked when the
config loads: a name, quantity or image the API server (or the KFP backend) would refuse is
refused here with the dotted field, not at submit time after a user has waited.

The name rules are Kubernetes' own (``k8s.io/apimachinery/pkg/util/validation``): the Python
client validates none of them and ships no validators, so they are written out here. Quantities
are read by the client's :func:`kubernetes.utils.quantity.parse_quantity` after a check of
Kubernetes' quantity grammar, which that parser does not enforce (it takes ``' 1'`` or ``inf``).
"""

from __future__ import annotations

import re
from decimal import Decimal

from videostar.config.fields import require

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL = re.compile(_LABEL)
_DNS1123_SUBDOMAIN = re.compile(rf"{_LABEL}(\.{_LABEL})*")
_NAME_PART = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_QUANTITY = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+|[KMGTPE]i|[numkMGTPE])?")
"""Kubernetes' quantity grammar (``resource.Quantity``): a number, then a binary or decimal SI
suffix or a decimal exponent."""
KFP_CPU = re.compile(r"([0-9]*[.])?[0-9]+m?")
KFP_MEMORY = re.compile(r"[0-9]+(E|Ei|P|Pi|T|Ti|G|Gi|M|Mi|Ki)?")
"""What KFP 2.17's ``set_cpu_request`` / ``set_memory_request`` take (its
``PipelineTask._validate_*_request_limit``; a test holds these to KFP's), memory without KFP's
``K``, which is no Kubernetes suffix."""
KFP_PIPELINE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")
"""KFP's ``validate_pipeline_name``."""
_REF_COMPONENT = r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*"
_REF_HOST = r"([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_REF_DOMAIN = rf"{_REF_HOST}(\.{_REF_HOST})*(:[0-9]+)?"
IMAGE_REFERENCE = re.compile(
    rf"({_REF_DOMAIN}/)?{_REF_COMPONENT}(/{_REF_COMPONENT})*(:[\w][\w.-]{{0,127}})?"
    r"(@[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?")
"""An OCI image reference (the grammar of ``distribution/reference``; no Python package we use
parses one): ``[registry[:port]/]path[:tag][@digest]``, the path in lower case."""
TOLERATION_OPERATORS = ("Exists", "Equal")
TOLERATION_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
STANDARD_RESOURCES = ("cpu", "memory", "ephemeral-storage")


def _full(pattern: re.Pattern[str], value: str, limit: int) -> bool:
    return len(value) <= limit and pattern.fullmatch(value) is not None


def dns_label(where: str, name: str, value: str) -> None:
    """A namespace or another DNS-1123 label."""
    require(where, name, _full(_DNS1123_LABEL, value, 63),
            f"a DNS-1123 label: lower-case letters, digits and '-', at most 63, got {value!r}")


def dns_subdomain(where: str, name: str, value: str) -> None:
    """A PersistentVolumeClaim's, a Secret's or another object's name."""
    require(where, name, _full(_DNS1123_SUBDOMAIN, value, 253),
            f"a DNS-1123 name: lower-case letters, digits, '-' and '.', at most 253, got {value!r}")


def qualified_name(value: str) -> bool:
    """A label key, a taint key, a resource name: ``[prefix/]name``, the prefix a DNS subdomain."""
    prefix, _, name = value.rpartition("/")
    return (_full(_NAME_PART, name, 63)
            and (not prefix and "/" not in value or _full(_DNS1123_SUBDOMAIN, prefix, 253)))


def label_key(where: str, name: str, value: str) -> None:
    require(where, name, qualified_name(value),
            f"a label key ([prefix/]name: letters, digits, '-', '_', '.'), got {value!r}")


def label_value(where: str, name: str, value: str) -> None:
    require(where, name, value == "" or _full(_NAME_PART, value, 63),
            f"a label value (letters, digits, '-', '_', '.', at most 63), got {value!r}")


def env_name(where: str, name: str, value: str) -> None:
    require(where, name, _full(_ENV_NAME, value, 1 << 16),
            f"an environment variable name (letters, digits, '_', not starting with a digit), got {value!r}")


def secret_key(where: str, name: str, value: str) -> None:
    require(where, name, _full(_SECRET_KEY, value, 253) and value not in (".", ".."),
            f"a Secret key (letters, digits, '-', '_', '.'), got {value!r}")


def image(where: str, name: str, value: str) -> None:
    require(where, name, _full(IMAGE_REFERENCE, value, 4096),
            f"an image reference [registry/]path[:tag][@digest] (lower-case path, no spaces), got {value!r}")


def quantity(where: str, name: str, value: str, kfp: re.Pattern[str] | None = None,
             whole: bool = False) -> Decimal:
    """A Kubernetes quantity > 0 (``whole``: a whole number, as extended resources such as
    ``nvidia.com/gpu`` must be); with ``kfp``, also in the form that KFP setter takes."""
    from kubernetes.utils.quantity import parse_quantity

    ok = _full(_QUANTITY, value, 64) and (kfp is None or kfp.fullmatch(value) is not None)
    amount = parse_quantity(value) if ok else Decimal(0)
    require(where, name, ok and amount > 0 and (not whole or amount == amount.to_integral_value()),
            f"a {'whole number' if whole else 'Kubernetes quantity'} > 0 "
            f"(e.g. {'1' if whole else '500m, 4, 16Gi'}), got {value!r}")
    return amount


def resource_name(where: str, name: str, value: str) -> None:
    """``cpu``, ``memory``, ``ephemeral-storage`` or an extended resource ``domain/name``."""
    require(where, name, value in STANDARD_RESOURCES or value.startswith("hugepages-")
            or ("/" in value and qualified_name(value)),
            f"cpu, memory, ephemeral-storage or an extended resource such as nvidia.com/gpu, got {value!r}")


def resources(where: str, values: dict[str, str]) -> None:
    """A container's requests (= limits): each a resource name and a quantity > 0; extended
    resources (``nvidia.com/gpu``) in whole numbers."""
    for key, value in values.items():
        resource_name(where, key, key)
        quantity(where, key, value, whole=key not in STANDARD_RESOURCES and not key.startswith("hugepages-"))
