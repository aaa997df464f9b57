"""Graph loading: how treadle gets from a name to a graph it can run.

* :mod:`~treadle.graphs.refs`: a reference (``path/to/file.py:attr`` or
  ``module.path:attr``) to a ``StateGraph``, a compiled graph or a factory;
* :mod:`~treadle.graphs.factories`: the factory signatures LangGraph Platform accepts,
  and the ``ServerRuntime`` they receive;
* :mod:`~treadle.graphs.by_value`: graphs shipped by value (cloudpickled builders in the store);
* :mod:`~treadle.graphs.registry`: the graphs a server or worker serves (from
  ``langgraph.json`` or references), compiled on its store.

``langgraph.json`` itself is read by :mod:`treadle.langgraph_json`. The package sits
above :mod:`treadle.runtime` (it compiles graphs) and below the cluster and the server.
"""
