"""Registries and plug-ins: entries resolve lazily, unknown names list the choices, plug-ins register."""

from __future__ import annotations

import sys
import textwrap
from importlib.metadata import EntryPoint

import pytest

from bench import registry
from bench.errors import RegistryError
from bench.registry import DISCRIMINATORS, Registry


def test_lazy_string_entries_resolve():
    r = Registry("thing")
    r.register("od", "collections:OrderedDict")
    from collections import OrderedDict
    assert r.get("od") is OrderedDict


def test_decorator_and_duplicates():
    r = Registry("thing")

    @r.register("a")
    class A:
        pass

    assert r.get("a") is A
    with pytest.raises(RegistryError, match="already registered"):
        r.register("a", object())


def test_unknown_name_lists_choices():
    with pytest.raises(RegistryError) as e:
        DISCRIMINATORS.get("nope")
    assert "patchgan" in str(e.value) and "--plugin" in str(e.value)


def test_bad_lazy_path_is_a_clear_error():
    r = Registry("thing")
    r.register("x", "no_such_module_xyz:Thing")
    with pytest.raises(RegistryError, match="cannot load thing 'x'"):
        r.get("x")


def test_builtin_registrations_resolve():
    for name in DISCRIMINATORS.names():
        assert callable(DISCRIMINATORS.get(name))


PLUGIN = textwrap.dedent('''
    import torch
    from bench.registry import DISCRIMINATORS

    @DISCRIMINATORS.register("{name}")
    class TinyD(torch.nn.Module):
        def __init__(self, x_channels, y_channels, *, image_size=256, ndf=64):
            super().__init__()
            self.net = torch.nn.Conv2d(x_channels + y_channels, 1, 3, padding=1)

        def forward(self, x, y):
            return self.net(torch.cat([x, y], 1))
''')


def _forget_plugins_after_the_test(monkeypatch) -> None:
    """Later tests' worker processes re-import every recorded plug-in: one whose folder is gone would fail them."""
    monkeypatch.setattr(registry, "_PLUGINS", dict(registry._PLUGINS))
    monkeypatch.setattr(DISCRIMINATORS, "_entries", dict(DISCRIMINATORS._entries))
    monkeypatch.setattr(DISCRIMINATORS, "_origin", dict(DISCRIMINATORS._origin))


def test_plugin_module_registers(tmp_path, monkeypatch):
    (tmp_path / "my_plugin_mod.py").write_text(PLUGIN.format(name="tiny-plugin-d"))
    monkeypatch.syspath_prepend(str(tmp_path))
    _forget_plugins_after_the_test(monkeypatch)
    registry.load_plugin("my_plugin_mod")
    assert "tiny-plugin-d" in DISCRIMINATORS
    assert DISCRIMINATORS.origin("tiny-plugin-d") == "my_plugin_mod"


def test_missing_plugin_module():
    with pytest.raises(RegistryError, match="cannot import plug-in module 'not_a_module_q'"):
        registry.load_plugin("not_a_module_q")


def test_entry_point_plugins_load(tmp_path, monkeypatch):
    (tmp_path / "ep_plugin_mod.py").write_text(PLUGIN.format(name="tiny-ep-d"))
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = EntryPoint(name="tiny", value="ep_plugin_mod", group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [ep] if group == registry.ENTRY_POINT_GROUP else [])
    monkeypatch.setitem(registry._state, "entry_points", False)
    _forget_plugins_after_the_test(monkeypatch)
    assert registry.load_entry_point_plugins() == ["ep_plugin_mod"]
    assert "tiny-ep-d" in DISCRIMINATORS
    sys.modules.pop("ep_plugin_mod", None)
