"""Pure-PyTorch core of proxyless-tune: ops, mixed ops, spaces, derivation, standalone nets.

Never imports Ray: everything here runs in one process and is the reference semantics that the
distributed search must reproduce.
"""

from nas_core.errors import ProxylessError

__all__ = ["ProxylessError"]
