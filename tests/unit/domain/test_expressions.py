"""The workflow expression language (stella.domain.expressions)."""

from __future__ import annotations

import re

import pytest

from stella.domain.expressions import ExpressionError, evaluate, parse_expression, render_template

CONTEXT = {
    "inputs": {"env": "prod", "count": 3, "tags": ["a", "b"], "flag": False, "name": "api-v2"},
    "steps": {"build": {"outputs": {"tag": "v1.2.3", "size": "10"}, "state": "succeeded"}},
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("inputs.env == 'prod'", True),
        ('inputs.env != "prod"', False),
        ("inputs.count > 2 && inputs.count <= 3", True),
        ("inputs.count < 1 || inputs.flag", False),
        ("!inputs.flag", True),
        ("!(inputs.env == 'prod')", False),
        ("steps.build.outputs.tag", "v1.2.3"),
        ("steps.build.state == 'succeeded'", True),
        ("inputs['env']", "prod"),
        ("inputs.tags[1]", "b"),
        ("inputs.missing", None),
        ("inputs.missing.deeper", None),
        ("contains(inputs.tags, 'a')", True),
        ("startsWith(inputs.name, 'api')", True),
        ("endsWith(inputs.name, '-v3')", False),
        ("inputs.count > 'x'", False),
        ("null == inputs.missing", True),
        ("1.5 < 2", True),
        ("'it\\'s' == \"it's\"", True),
        ("true && (false || true)", True),
    ],
)
def test_expressions_evaluate(text, expected):
    assert evaluate(parse_expression(text), CONTEXT) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("inputs.env ==", "expected a value"),
        ("__import__('os')", "unknown function"),
        ("os.system('x')", "unknown name 'os'"),
        ("inputs.env = 'x'", "unexpected character"),
        ("contains(inputs.tags)", "takes 2 arguments"),
        ("(inputs.env", "expected )"),
        ("inputs.env 'x'", "after a complete expression"),
        ("inputs.[0]", "expected a name"),
        ("x" * 1001, "longer than"),
    ],
)
def test_bad_expressions_are_rejected_with_a_reason(text, fragment):
    with pytest.raises(ExpressionError, match=re.escape(fragment)):
        parse_expression(text)


def test_templates_keep_the_type_of_a_lone_expression_and_interpolate_text():
    config = {
        "count": "${{ inputs.count }}",
        "command": "deploy ${{ steps.build.outputs.tag }} to ${{ inputs.env }}",
        "list": ["${{ inputs.tags }}", "x-${{ inputs.flag }}", "${{ inputs.missing }}-y"],
        "untouched": 5,
    }
    assert render_template(config, CONTEXT) == {
        "count": 3,
        "command": "deploy v1.2.3 to prod",
        "list": [["a", "b"], "x-false", "-y"],
        "untouched": 5,
    }
