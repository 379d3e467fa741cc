"""An unknown component type in a config: name the registry and the types it does know.

mmengine's error names the registry only ("X is not in the mmdet3d::model registry"); a user
who mistyped ``IKNETransformerHead`` wants the right spelling, so we add the closest known
names and the registry's types.
"""
import difflib
import re

from mmengine.registry import Registry

_UNKNOWN_TYPE = re.compile(r"'?(\S+) is not in the (\w+)::(\w+) registry")


def _known_types(registry):
    """Types registered in ``registry`` and the registries above it, nearest first."""
    names = []
    while registry is not None:
        names += [n for n in registry.module_dict if n not in names]
        registry = registry.parent
    return names


def explain_unknown_type(error):
    """A clearer ``KeyError`` for mmengine's unknown-type error, or None for any other error."""
    match = _UNKNOWN_TYPE.search(str(error))
    if match is None:
        return None
    from mmdet3d import registry as mmdet3d_registry
    wanted, scope, name = match.groups()
    registry = next((r for r in vars(mmdet3d_registry).values()
                     if isinstance(r, Registry) and (r.scope, r.name) == (scope, name)), None)
    if registry is None:
        return None
    known = _known_types(registry)
    close = difflib.get_close_matches(wanted, known, n=3, cutoff=0.6)
    own = sorted(registry.module_dict)
    hint = f' Did you mean {", ".join(close)}?' if close else ''
    return KeyError(f'{wanted!r} is not a type in the {scope}::{name} registry.{hint} '
                    f'Its types ({len(own)}, plus {len(known) - len(own)} from the registries '
                    f'above it): {", ".join(own)}')

