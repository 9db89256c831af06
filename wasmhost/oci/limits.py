"""Hard caps on what a registry can make a pull read, decompress and store.

A registry is not trusted with sizes: manifests and configs are read only up to their limit,
whatever Content-Length or the descriptor claims, and a layer may be neither larger nor expand
to more than the module size limit. Past a limit the content is refused with one line.
"""

from __future__ import annotations

from typing import Final

import attrs

from .errors import TooLarge

MiB: Final = 1 << 20


@attrs.frozen
class Limit:
    """A cap on the bytes of one kind of content, named in the refusal."""

    size: int = attrs.field(validator=attrs.validators.gt(0))
    #: What the limit is called in messages ("module size"), or nothing.
    name: str = ""

    def refuse(self, what: str, subject: str, size: int | None = None, *, expands: bool = False) -> TooLarge:
        """The error for `subject` (a manifest, a blob) that passed the limit, at `size` if known."""
        amount = f"{self.size // MiB} MiB" if self.size % MiB == 0 else f"{self.size}-byte"
        label = " ".join(filter(None, ["the", amount, self.name, "limit"]))
        verb = "expands past" if expands else "is larger than"
        known = f" ({size} bytes)" if size is not None else ""
        return TooLarge(what, f"{subject} {verb} {label}{known}; refusing it")


#: What distribution itself accepts for a manifest or an index.
MANIFEST: Final = Limit(4 * MiB)
#: Image configs: a few KiB in practice, never more than a manifest.
CONFIG: Final = Limit(4 * MiB)
#: Default for layers, the bytes a layer decompresses to, and so the module (`--max-module-size`).
MAX_MODULE_SIZE: Final = 256 * MiB
#: A token service's answer: a JSON object with a token of a few KiB.
TOKEN_ANSWER: Final = Limit(1 * MiB)
#: The part of an error answer read for the registry's reason.
ERROR_BODY: Final = 64 * 1024


def module_size(size: int = MAX_MODULE_SIZE) -> Limit:
    """The module size limit: a layer's bytes, and what a compressed layer may expand to."""
    return Limit(size, "module size")
