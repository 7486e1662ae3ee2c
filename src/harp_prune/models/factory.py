"""A user's own architecture named on the command line: ``--model-factory module:function``."""

from __future__ import annotations

import importlib
import inspect
import os
import sys

from torch import nn

from harp_prune.errors import HarpError


def model_from_factory(path: str) -> nn.Module:
    """Call the zero-argument function named by ``module:function`` and check that it returns a model.

    The module and the function are the user's code: whatever importing or calling them raises is reported as
    one line naming the factory, not as a traceback through harp-prune.
    """
    module_name, _, function_name = path.partition(":")
    if not module_name or not function_name:
        raise HarpError(f"--model-factory '{path}' is not module:function; write it like mypkg.models:build")
    if os.getcwd() not in sys.path:  # as 'python -m' does, so a module beside the user's files is found
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise HarpError(f"--model-factory: cannot import '{module_name}' ({exc}); run from the folder that holds "
                        "it or add that folder to PYTHONPATH") from exc
    except Exception as exc:  # the user's module failed while it was imported: a SyntaxError, ...
        raise HarpError(f"--model-factory: importing '{module_name}' failed ({type(exc).__name__}: {exc}); fix "
                        "that module") from exc
    factory = getattr(module, function_name, None)
    if not callable(factory):
        raise HarpError(f"--model-factory: '{module_name}' has no function '{function_name}'; name a function "
                        "that returns the model")
    try:
        inspect.signature(factory).bind()
    except TypeError:
        raise HarpError(f"--model-factory: {path} needs arguments; name a function that takes none and returns "
                        "the model (wrap yours: def build(): return MyNet(10))") from None
    except ValueError:  # no signature to inspect (a builtin): calling it says whether it works
        pass
    try:
        model = factory()
    except Exception as exc:  # the user's function failed
        raise HarpError(f"--model-factory: {path}() raised {type(exc).__name__}: {exc}; fix the function") from exc
    if not isinstance(model, nn.Module):
        raise HarpError(f"--model-factory: {path}() returned a {type(model).__name__}, not a torch nn.Module; "
                        "return an instance of the model's architecture")
    return model
