"""langchain-tests' async tests carry no asyncio marker (LangChain's repos run asyncio_mode=auto):
mark them as they are collected so pytest-asyncio runs them in its strict mode too."""

import inspect

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector, name, obj):
    if inspect.iscoroutinefunction(obj) and not any(m.name == "asyncio" for m in getattr(obj, "pytestmark", [])):
        pytest.mark.asyncio(obj)
