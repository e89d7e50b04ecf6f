"""The book's {eval} roles, evaluated as Jupyter user expressions: the way jupyterlab-myst evaluates them.

myst-nb's inline execution runs each expression as a code cell without history, and IPython then prints no
result when the last code cell that ran ended in `;` (its semicolon rule reads the history), so a number after
a figure cell would be missing. A user expression of an empty execute request is formatted whatever came before,
exactly as a reader's JupyterLab does it.
"""
import re

import nbformat
from myst_nb.core.execute.base import EvalNameError
from myst_nb.core.execute.inline import NotebookClientInline


def eval_variable(self, name):
    """The outputs of expression `name` in this notebook's kernel: one execute_result, or one error."""
    if not re.match(self.nb_config.eval_name_regex, name):
        raise EvalNameError(name)
    client = self._client
    msg_id = client.kc.execute("", store_history=False, user_expressions={"value": name})
    reply = client.wait_for_reply(msg_id)  # within the notebook's execution timeout
    if reply is None:
        return [nbformat.v4.new_output("error", ename="TimeoutError", evalue=f"no reply for {name}", traceback=[])]
    result = reply["content"]["user_expressions"]["value"]
    if result["status"] != "ok":
        return [nbformat.v4.new_output("error", ename=result.get("ename", ""), evalue=result.get("evalue", ""),
                                       traceback=result.get("traceback", []))]
    return [nbformat.v4.new_output("execute_result", data=result["data"], metadata=result.get("metadata", {}))]


def setup(app):
    NotebookClientInline.eval_variable = eval_variable
    return {"parallel_read_safe": True, "parallel_write_safe": True}
