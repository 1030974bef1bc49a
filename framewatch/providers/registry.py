"""Provider kinds: adding a provider is one new module and one line here."""

from __future__ import annotations

from typing import Any, Protocol

from framewatch.providers.base import Provider, ProviderDeps, ProviderSpec
from framewatch.providers.builtin import BuiltinProvider
from framewatch.providers.compreface import CompreFaceProvider
from framewatch.providers.deepstack import DeepStackProvider
from framewatch.providers.generic_http import GenericHttpProvider


class ProviderClass(Protocol):
    kind: str

    def __call__(self, spec: ProviderSpec, deps: ProviderDeps) -> Provider: ...


PROVIDER_KINDS: dict[str, Any] = {
    BuiltinProvider.kind: BuiltinProvider,
    DeepStackProvider.kind: DeepStackProvider,
    CompreFaceProvider.kind: CompreFaceProvider,
    GenericHttpProvider.kind: GenericHttpProvider,
}

# Kinds that run in this process and need no base URL.
LOCAL_KINDS = frozenset({BuiltinProvider.kind})


def build_provider(spec: ProviderSpec, deps: ProviderDeps) -> Provider:
    provider_class = PROVIDER_KINDS.get(spec.kind)
    if provider_class is None:
        raise ValueError(f"unknown provider kind {spec.kind!r}")
    provider: Provider = provider_class(spec, deps)
    return provider
