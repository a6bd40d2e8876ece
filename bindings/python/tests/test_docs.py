"""The package documents itself: every public name, and every public member of its classes,
has a docstring (``help()`` is the reference a Python user reaches for first)."""

from __future__ import annotations

import inspect
import pydoc
import typing

import bgjob


def _undocumented() -> list:
    missing = []
    for name in bgjob.__all__:
        obj = getattr(bgjob, name)
        if typing.get_origin(obj) is not None:
            continue  # a type alias (JobLike): documented by a comment where it is defined
        if not inspect.getdoc(obj):
            missing.append(name)
        if not inspect.isclass(obj) or issubclass(obj, BaseException):
            continue
        for attr, member in vars(obj).items():
            if attr.startswith("_") or isinstance(member, (int, str, float)):
                continue  # private, or an enum member / constant (documented by its class)
            if not inspect.getdoc(member):
                missing.append(f"{name}.{attr}")
    return missing


def test_every_public_name_and_member_is_documented():
    assert bgjob.__all__, "bgjob exports nothing"
    assert _undocumented() == []


def test_help_of_start_job_tells_how_to_use_it():
    text = pydoc.render_doc(bgjob.start_job, renderer=pydoc.plaintext)
    assert "start_job(fn, /, *args, name=None, pool=None, on_state_changed=None, **kwargs)" \
        in text
    for words in ("Start-Job", "returns its `Job` at once", "exception fails the job"):
        assert words in text, words


def test_all_lists_exactly_the_public_names():
    public = {n for n in vars(bgjob) if not n.startswith("_")}
    modules = {n for n in public if inspect.ismodule(getattr(bgjob, n))}
    assert set(bgjob.__all__) == public - modules - {"annotations", "Any", "Optional", "Union"}
