#!/usr/bin/env python3
"""Writes the chat-template goldens used by tests/cpu/tokenizer_chat_template_test.cpp.

Usage: gen_chat_template_goldens.py [TOKENIZERS_DIR] [OUT_DIR]
  TOKENIZERS_DIR  real tokenizer folders (default ../shared/data/tokenizers)
  OUT_DIR         where the JSON goldens go (default tests/data/chat_template)

Two kinds of golden:
  * <model>.json: conversations rendered by transformers' own
    tokenizer.apply_chat_template (tokenize=False) from the checkpoint's
    tokenizer_config.json; the template and special tokens are stored with them.
  * jinja_cases.json: small templates exercising one feature each, rendered with
    the environment transformers builds (ImmutableSandboxedEnvironment with
    trim_blocks and lstrip_blocks, its tojson and raise_exception).
Every rendering is also checked against a plain render of the compiled template,
so the goldens do not depend on one code path. Needs jinja2 and transformers.
"""
import json
import sys
from pathlib import Path

from transformers import AutoTokenizer
from transformers.utils.chat_template_utils import _compile_jinja_template

MODELS = {"mixtral": "mixtral", "qwen3": "qwen2/qwen3", "qwen2.5": "qwen2/qwen2.5"}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city. Temperatures in °C.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. \"Zürich\""},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {"name": "get_time", "description": "Current time", "parameters": {"type": "object", "properties": {}}},
}


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def system(text):
    return {"role": "system", "content": text}


def tool_call_msg(content, *calls):
    return {"role": "assistant", "content": content, "tool_calls": list(calls)}


def call(name, args):
    return {"type": "function", "function": {"name": name, "arguments": args}}


def tool(text):
    return {"role": "tool", "content": text}


NON_ASCII = "Grüße aus Zürich! 日本語のテキスト, emoji 🚀, Ελληνικά, \"quotes\" and \\ backslash\ttab"

COMMON = [
    ("single_user", [user("Hello, who are you?")], False, {}),
    ("single_user_gen", [user("Hello, who are you?")], True, {}),
    ("multi_turn", [user("What is 2+2?"), assistant("4."), user("And 3+3?")], True, {}),
    ("multi_turn_closed", [user("Hi"), assistant("Hello! How can I help?"), user("Tell me a joke."),
                           assistant("Why did the GPU cross the road?")], False, {}),
    ("non_ascii", [user(NON_ASCII), assistant("Ça va très bien — merci! 谢谢"), user("¿Y tú?")], True, {}),
    ("whitespace_content", [user("  leading and trailing  \n\n"), assistant("\n\nanswer\n"), user("\t")], True, {}),
    ("empty_content", [user("")], True, {}),
]

MIXTRAL = COMMON + [
    ("system_first_error", [system("Be brief."), user("Hi")], True, {}),
    ("not_alternating_error", [user("Hi"), user("Hello?")], True, {}),
    ("assistant_first_error", [assistant("I start."), user("Hi")], False, {}),
    ("tool_role_error", [user("Hi"), tool("42")], False, {}),
]

QWEN_COMMON = COMMON + [
    ("system_user", [system("You are a pirate."), user("Hello")], True, {}),
    ("system_multi_turn", [system("Answer in French."), user("Hello"), assistant("Bonjour"),
                           user("How are you?")], True, {}),
    ("system_later", [user("Hi"), system("Switch to formal tone."), user("Hello")], True, {}),
    ("tools_no_system", [user("Weather in Paris?")], True, {"tools": [WEATHER_TOOL, TIME_TOOL]}),
    ("tools_with_system", [system("You are helpful."), user("Weather in Paris?")], True, {"tools": [WEATHER_TOOL]}),
    ("tool_round_trip", [
        system("You are helpful."),
        user("What's the weather in Paris and Zürich?"),
        tool_call_msg("Let me check.", call("get_weather", {"city": "Paris"}),
                      call("get_weather", {"city": "Zürich", "unit": "celsius"})),
        tool("{\"temperature\": 21}"),
        tool("{\"temperature\": 17}"),
        assistant("Paris: 21 °C, Zürich: 17 °C."),
        user("Thanks!"),
    ], True, {"tools": [WEATHER_TOOL]}),
    ("tool_call_no_content", [
        user("Time?"),
        tool_call_msg(None, call("get_time", {})),
        tool("12:00"),
    ], True, {"tools": [TIME_TOOL]}),
    ("tool_call_empty_content", [
        user("Time?"),
        tool_call_msg("", call("get_time", {})),
        tool("12:00"),
    ], True, {"tools": [TIME_TOOL]}),
    ("tool_call_without_function_wrapper", [
        user("Time?"),
        {"role": "assistant", "content": "", "tool_calls": [{"name": "get_time", "arguments": {"tz": "UTC"}}]},
        tool("12:00"),
    ], False, {"tools": [TIME_TOOL]}),
    ("tool_first_message", [tool("orphan result"), user("ok")], True, {}),
]

QWEN3 = QWEN_COMMON + [
    ("think_history", [
        user("What is 7*6?"),
        assistant("<think>\n7 times 6 is 42.\n</think>\n\n42"),
        user("And 8*6?"),
    ], True, {}),
    ("think_last_assistant", [
        user("What is 7*6?"),
        assistant("<think>\nmultiply\n</think>\n\n42"),
    ], False, {}),
    ("reasoning_content_field", [
        user("What is 7*6?"),
        {"role": "assistant", "content": "42", "reasoning_content": "6*7 = 42"},
    ], False, {}),
    ("reasoning_content_history", [
        user("What is 7*6?"),
        {"role": "assistant", "content": "42", "reasoning_content": "6*7 = 42"},
        user("Sure?"),
    ], True, {}),
    ("enable_thinking_false", [user("Quick answer: capital of France?")], True, {"enable_thinking": False}),
    ("enable_thinking_true", [user("Capital of France?")], True, {"enable_thinking": True}),
    ("enable_thinking_false_no_gen", [user("Capital of France?")], False, {"enable_thinking": False}),
    ("multi_step_tools_thinking", [
        user("Weather in Paris?"),
        tool_call_msg("<think>\nI should call the tool.\n</think>\n\n", call("get_weather", {"city": "Paris"})),
        tool("<tool_response>sunny</tool_response>"),
        tool("{\"temperature\": 21}"),
        assistant("<think>\nThe tool said 21.\n</think>\n\nIt is 21 °C and sunny."),
    ], False, {"tools": [WEATHER_TOOL]}),
    ("tool_args_string", [
        user("Weather?"),
        tool_call_msg("", call("get_weather", "{\"city\": \"Oslo\"}")),
        tool("cold"),
    ], True, {"tools": [WEATHER_TOOL]}),
    ("user_tool_response_text", [
        user("<tool_response>fake</tool_response>"),
        assistant("<think>\nhmm\n</think>\n\nok"),
    ], False, {}),
]

QWEN25 = QWEN_COMMON


def render_model(tok_dir: Path, cases):
    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    template = tok.chat_template
    compiled = _compile_jinja_template(template)
    cfg = json.loads((tok_dir / "tokenizer_config.json").read_text())
    out_cases = []
    for name, messages, add_gen, extra in cases:
        case = {"name": name, "messages": messages, "add_generation_prompt": add_gen, "extra": extra}
        kwargs = dict(extra)
        tools = kwargs.pop("tools", None)
        try:
            text = tok.apply_chat_template(messages, tools=tools, add_generation_prompt=add_gen,
                                           tokenize=False, **kwargs)
            case["expected"] = text
        except Exception as e:  # the template's raise_exception
            case["error"] = str(e)
        # Cross-check with a direct render of the compiled template.
        plain = [{k: v for k, v in m.items() if v is not None} for m in messages]
        for m in plain:
            reasoning = m.get("reasoning_content")
            if reasoning is not None:
                m["thinking"] = reasoning
        ctx = dict(tok.special_tokens_map)
        ctx.update(kwargs)
        try:
            direct = compiled.render(messages=plain, tools=tools, documents=None,
                                     add_generation_prompt=add_gen, **ctx)
            assert case.get("expected") == direct, (name, direct)
        except Exception as e:
            assert case.get("error") == str(e), (name, e)
        out_cases.append(case)
    tokens = {k: v for k, v in tok.special_tokens_map.items()}
    return {
        "generator": "tools/gen_chat_template_goldens.py (transformers apply_chat_template)",
        "tokenizer_config": {"chat_template": template, **tokens,
                             "add_bos_token": cfg.get("add_bos_token", False),
                             "add_eos_token": cfg.get("add_eos_token", False)},
        "cases": out_cases,
    }


def main():
    tokenizers = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("../shared/data/tokenizers")
    out_dir = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("tests/data/chat_template")
    out_dir.mkdir(parents=True, exist_ok=True)
    for model, cases in (("mixtral", MIXTRAL), ("qwen3", QWEN3), ("qwen2.5", QWEN25)):
        golden = render_model(tokenizers / MODELS[model], cases)
        write(out_dir / f"{model}.json", golden)
    write(out_dir / "jinja_cases.json", {"generator": "tools/gen_chat_template_goldens.py (jinja2 "
                                         "as configured by transformers)",
                                         "shared_context": CTX, "cases": render_cases(CASES)})


# Feature cases: (name, template, context). CTX is the context unless one is given.
CTX = {
    "s": "héllo wörld", "n": 7, "f": 2.5, "t": True, "no": None, "l": [3, 1, 2], "e": [],
    "d": {"b": 1, "a": [1, 2], "items": "key named items"}, "ws": "  \t pad \n ",
    "msgs": [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"},
             {"role": "assistant", "content": "yo", "tool_calls": [{"name": "f", "arguments": {"x": 1}}]}],
}

CASES = [
    # whitespace control, trim_blocks, lstrip_blocks
    ("ws_trim_blocks", "{% if t %}\nA\n{% endif %}\nB\n", {}),
    ("ws_lstrip_blocks", "  {% if true %}\n  x\n  {% endif %}\n  {{ 'y' }}\n   {# c #}\nz  {%+ if true %}w{% endif %}  ", {}),
    ("ws_minus_both_sides", "a {#- c -#} b {%- if true -%}  c {%- endif %}\nd", {}),
    ("ws_var_minus", "a  {{- 'x' -}}  \n b {{ 'y' }} \n", {}),
    ("ws_plus_keeps_newline", "{% if true +%}\nx{% endif %}", {}),
    ("ws_plus_lstrip", "  {%+ if true %}x{% endif %}", {}),
    ("ws_lstrip_not_for_vars", "  {{ 'v' }}\n  {% set a = 1 %}\nq", {}),
    ("ws_lstrip_text_before", "x {% if true %}y{% endif %}", {}),
    ("ws_comment_trim", "a\n{# comment #}\nb\n  {# indented #}\nc", {}),
    ("ws_trailing_newline_dropped", "text\n", {}),
    ("ws_crlf_normalised", "a\r\n{% if true %}\r\nb\r\n{% endif %}\r\nc", {}),
    ("ws_first_line_lstrip", "   {% if true %}x{% endif %}", {}),
    ("ws_trim_only_one_newline", "{% if true %}\n\nx{% endif %}", {}),
    ("ws_minus_end_strips_all", "{% if true -%}  \n\n  x{% endif %}", {}),
    ("ws_tabs_lstrip", "\t\t{% if true %}x\n\t{% endif %}\ny", {}),
    ("ws_nbsp_lstrip", "\u00a0{% if true %}x{% endif %}", {}),
    # literals and output
    ("lit_render", "{{ none }}|{{ true }}|{{ false }}|{{ 42 }}|{{ -3 }}|{{ 1.0 }}|{{ 1e20 }}|{{ 1.5e-5 }}|{{ 0.1 + 0.2 }}", {}),
    ("lit_containers", "{{ [1, 'a', none, true, 1.0, {'x': 'y\\'s'}] }}|{{ {'a': 1, 'b': [2]} }}|{{ (1, 2)|list }}|{{ [] }}", {}),
    ("lit_strings", "{{ \"a\\tb\\x41\\u00e9\\d\" }}|{{ 'it\\'s' }}|{{ \"a\" 'b' }}|{{ 'new\\nline' }}", {}),
    ("lit_ints", "{{ 1_000 }}|{{ 0x1F }}|{{ 0b101 }}|{{ 0o17 }}", {}),
    ("lit_repr_quotes", "{{ ['a\"b', \"c'd\", 'e\\'f\"g', 'é\\n'] }}", {}),
    # arithmetic
    ("math_ops", "{{ 10 / 4 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ -7 % 3 }}|{{ 7.5 % 2 }}|{{ 2 ** 10 }}|{{ 2 ** -1 }}|{{ 3 - 5 }}|{{ 2 * 3.5 }}", {}),
    ("math_strings", "{{ 'ab' + 'cd' }}|{{ 'ab' * 3 }}|{{ [1] + [2] }}|{{ [0] * 3 }}|{{ 1 ~ 'x' ~ none ~ true }}", {}),
    ("math_precedence", "{{ 1 + 2 * 3 }}|{{ (1 + 2) * 3 }}|{{ -2 ** 2 }}|{{ 'a' ~ 2 * 3 }}|{{ n|string + 'x' }}|{{ l|length - 1 }}", CTX),
    ("math_bool_int", "{{ true + 1 }}|{{ n / 2 }}|{{ n // 2 }}|{{ f * 2 }}", CTX),
    ("math_concat_binds_tighter_error", "{{ 2 + 3 ~ 4 }}", {}),
    ("math_div_zero", "{{ 1 / 0 }}", {}),
    ("math_str_plus_int", "{{ 'a' + 1 }}", {}),
    # comparisons and logic
    ("cmp_chain", "{{ 1 < 2 < 3 }}|{{ 3 > 2 > 2 }}|{{ 1 == 1.0 }}|{{ 1 == true }}|{{ 'a' != 'b' }}|{{ [1, 2] == [1, 2] }}|{{ 'abc' < 'abd' }}|{{ none == none }}", {}),
    ("cmp_in", "{{ 'ell' in s }}|{{ 2 in l }}|{{ 'a' in d }}|{{ 'z' not in d }}|{{ 5 not in l }}|{{ 'x' in undefined_thing }}", CTX),
    ("logic", "{{ t and n }}|{{ no or 'fallback' }}|{{ not e }}|{{ not t and t }}|{{ e or [] }}|{{ 0 and x.y }}", CTX),
    ("cond_expr", "{{ 'yes' if t else 'no' }}|{{ 'a' if false }}|{{ 'x' if no else 'y' if t else 'z' }}", CTX),
    ("cmp_str_int_error", "{{ 'a' < 1 }}", {}),
    # undefined
    ("undef_render", "[{{ missing }}]{{ d.missing }}{{ s.nope }}{{ no.attr }}{{ l[10] }}{{ d['x'] }}", CTX),
    ("undef_ops", "{{ missing ~ 'a' }}|{{ missing == missing }}|{{ missing is defined }}|{{ missing | length }}|{{ missing|default('dflt') }}|{% for x in missing %}x{% endfor %}", CTX),
    ("undef_attr_error", "{{ missing.attr }}", {}),
    ("undef_plus_error", "{{ missing + 'a' }}", {}),
    ("undef_tojson_error", "{{ missing | tojson }}", {}),
    # tests
    ("tests_types", "{{ s is string }}{{ n is string }}{{ n is number }}{{ f is number }}{{ t is number }}{{ n is integer }}{{ f is float }}{{ t is boolean }}{{ no is none }}{{ d is mapping }}{{ l is mapping }}", CTX),
    ("tests_iterable", "{{ l is iterable }}{{ s is iterable }}{{ d is iterable }}{{ n is iterable }}{{ no is iterable }}{{ missing is iterable }}{{ l is sequence }}", CTX),
    ("tests_bool", "{{ t is true }}{{ 1 is true }}{{ false is false }}{{ 0 is false }}{{ no is not none }}{{ missing is undefined }}{{ s is not defined }}", CTX),
    ("tests_numbers", "{{ n is odd }}{{ n is even }}{{ 9 is divisibleby 3 }}{{ 9 is divisibleby(2) }}{{ n is eq 7 }}{{ n is ne 7 }}{{ n is gt 3 }}{{ n is lt 3 }}{{ n is ge 7 }}{{ n is le 6 }}", CTX),
    ("tests_misc", "{{ 2 is in l }}{{ 'x' is in 'xyz' }}{{ n is sameas 7 }}{{ no is sameas none }}{{ d is sameas d }}", CTX),
    # filters
    ("flt_length", "{{ s|length }}|{{ l|length }}|{{ d|length }}|{{ e|count }}|{{ ''|length }}", CTX),
    ("flt_case_trim", "{{ s|upper }}|{{ 'ÀB'|lower }}|[{{ ws|trim }}]|[{{ 'xxaxx'|trim('x') }}]|{{ 'hello World'|capitalize }}", CTX),
    ("flt_join", "{{ l|join }}|{{ l|join(', ') }}|{{ ['a', none, 1]|join('-') }}|{{ msgs|join(',', attribute='role') }}|{{ s|join('.') }}", CTX),
    ("flt_default", "{{ missing|default('d') }}|{{ ''|default('d') }}|{{ ''|default('d', true) }}|{{ no|default('d') }}|{{ missing|d('alias') }}|{{ e|default('empty', boolean=true) }}", CTX),
    ("flt_first_last", "{{ l|first }}|{{ l|last }}|{{ s|first }}|{{ s|last }}|[{{ e|first }}]|{{ msgs|last|tojson }}", CTX),
    ("flt_string", "{{ n|string }}|{{ l|string }}|{{ no|string }}|{{ t|string }}|{{ d|string }}|[{{ missing|string }}]", CTX),
    ("flt_tojson", "{{ s|tojson }}|{{ d|tojson }}|{{ [1, 2.5, none, true, 'é\"\\\\\\n\\t\\u0001'] | tojson }}|{{ 1e20|tojson }}|{{ {}|tojson }}|{{ []|tojson }}", CTX),
    ("flt_tojson_indent", "{{ d|tojson(indent=2) }}|{{ msgs|tojson(indent=4) }}|{{ {'a': {}, 'b': []}|tojson(indent=1) }}", CTX),
    ("flt_tojson_options", "{{ d|tojson(sort_keys=true) }}|{{ 'é'|tojson(ensure_ascii=true) }}|{{ '🚀'|tojson(ensure_ascii=true) }}|{{ d|tojson(separators=(',', ':')) }}", CTX),
    ("flt_list_reverse", "{{ l|reverse|list }}|{{ s|reverse }}|{{ s|list }}|{{ d|list }}", CTX),
    ("flt_int_float_abs", "{{ '42'|int }}|{{ 3.9|int }}|{{ 'x'|int }}|{{ '2.5'|float }}|{{ 3|float }}|{{ -4|abs }}|{{ -2.5|abs }}", CTX),
    ("flt_items_dictsort", "{% for k, v in d|items %}{{ k }}={{ v }};{% endfor %}", CTX),
    ("flt_replace_chain", "{{ s|replace('l', 'L')|upper }}|{{ 'aaa'|replace('a', 'b', 2) }}", CTX),
    ("flt_select", "{{ msgs|selectattr('role', 'equalto', 'user')|list|length }}|{{ msgs|rejectattr('role', 'eq', 'user')|map(attribute='role')|join(',') }}|{{ [1, 0, 2, none]|select|list }}|{{ l|reject('odd')|list }}|{{ msgs|selectattr('tool_calls')|map(attribute='role')|first }}", CTX),
    ("flt_map", "{{ ['a', 'b']|map('upper')|join }}|{{ msgs|map(attribute='content')|join('/') }}|{{ msgs|map(attribute='missing', default='-')|join }}", CTX),
    # string methods
    ("str_methods", "{{ s.startswith('hé') }}|{{ s.endswith('x') }}|{{ s.upper() }}|{{ 'AbC'.lower() }}|{{ ws.strip() }}|[{{ ws.lstrip() }}]|[{{ ws.rstrip() }}]|{{ 'xxaxx'.strip('x') }}|{{ '--a-'.lstrip('-') }}|{{ 'a\\n\\n'.rstrip('\\n') }}", CTX),
    ("str_split", "{{ '  a b  c '.split() }}|{{ 'a,b,,c'.split(',') }}|{{ 'a,b,c'.split(',', 1) }}|{{ 'a<x>b<x>c'.split('<x>')[-1] }}|{{ ''.split(',') }}|{{ ''.split() }}|{{ 'a b c'.split(none, 1) }}", {}),
    ("str_replace_misc", "{{ 'aXa'.replace('a', 'b') }}|{{ 'aaa'.replace('a', 'b', 1) }}|{{ 'abc'.replace('', '-') }}|{{ 'x'.startswith(('a', 'x')) }}|{{ 'hello'.capitalize() }}|{{ 'abcabc'.find('c') }}|{{ 'abcabc'.count('bc') }}|{{ 'abcabc'.rfind('x') }}", {}),
    ("str_more_methods", "{{ 'a-b-c'.rsplit('-', 1) }}|{{ ' a  b '.rsplit() }}|{{ ', '.join(['x', 'y']) }}|{{ 'a-b'.rsplit('-') }}", {}),
    ("str_index_slice", "{{ s[0] }}|{{ s[-1] }}|{{ s[1:4] }}|{{ s[::-1] }}|{{ s[::2] }}|{{ s[-3:] }}|{{ s[100] }}|{{ s[:100] }}", CTX),
    ("str_split_strip_chain", "{{ '<think>\\nabc\\n</think>\\n\\nrest'.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') }}", {}),
    # lists, dicts, slicing
    ("list_slices", "{{ l[1:] }}|{{ l[:-1] }}|{{ l[::2] }}|{{ l[5:] }}|{{ l[::-1] }}|{{ l[-2::-1] }}|{{ l[1:2:1] }}|{{ l[-1] }}|{{ l[0] }}", CTX),
    ("dict_access", "{{ d.b }}|{{ d['b'] }}|{{ d['items'] }}|{{ d.get('b') }}|{{ d.get('zz') }}|{{ d.get('zz', 3) }}|{{ d.keys()|list }}|{{ d.values()|list|length }}|{{ msgs[2].tool_calls[0].arguments.x }}|{{ l.0 }}", CTX),
    ("dict_items_loop", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k in d %}{{ k }},{% endfor %}", CTX),
    ("dict_literal_order", "{{ {'z': 1, 'a': 2, 'm': {'y': 1, 'b': 2}}|tojson }}|{{ dict(b=1, a=2)|tojson }}", {}),
    ("list_methods", "{{ [1, 2, 1, 'a']|length }}|{{ [1, 2, 1].count(1) }}|{{ ['a', 'b'].index('b') }}|{{ l.count(5) }}", CTX),
    ("dict_method_unsafe", "{{ d.pop('b') }}", CTX),
    ("list_method_unsafe", "{{ l.append(4) }}", CTX),
    # statements
    ("for_loop_vars", "{% for x in l %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.previtem }}{{ loop.nextitem }};{% endfor %}", CTX),
    ("for_filter_else", "{% for i in l if i > 1 %}{{ loop.index }}/{{ loop.length }}{% else %}none{% endfor %}|{% for i in e %}x{% else %}empty{% endfor %}", CTX),
    ("for_nested_loop", "{% for a in [1, 2] %}{% for b in 'xy' %}{{ a }}{{ b }}{{ loop.index }}{% if loop.last %};{% endif %}{% endfor %}{{ loop.index }}{% endfor %}", {}),
    ("for_string_dict", "{% for c in 'ab' %}{{ c }}{% endfor %}{% for k in d %}{{ k }}{% endfor %}", CTX),
    ("for_reversed_messages", "{% for m in msgs[::-1] %}{{ (msgs|length - 1) - loop.index0 }}:{{ m.role }} {% endfor %}", CTX),
    ("for_break_continue", "{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{{ i }}{% endfor %}", {}),
    ("for_range", "{{ range(3)|list }}|{{ range(1, 7, 2)|list }}|{{ range(5, 0, -2)|list }}|{% for i in range(2) %}{{ i }}{% endfor %}", {}),
    ("for_loop_cycle", "{% for i in l %}{{ loop.cycle('a', 'b') }}{% endfor %}", CTX),
    ("for_unpack", "{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }};{% endfor %}", {}),
    ("for_none_error", "{% for x in no %}{% endfor %}", CTX),
    ("scope_loop_set", "{% set c = 0 %}{% for i in [1, 2, 3] %}{{ c }}{% set c = c + 1 %}{{ c }}{% endfor %}{{ c }}", {}),
    ("scope_loop_iteration", "{% for i in [1, 2, 3] %}{% if i == 1 %}{% set c = 5 %}{% endif %}[{{ c }}]{% endfor %}", {}),
    ("scope_if_set", "{% if true %}{% set c = 5 %}{% endif %}{{ c }}", {}),
    ("set_reassign_self", "{% for m in msgs %}{% set m = m.tool_calls[0] if m.tool_calls else m %}{{ m.name or m.role }},{% endfor %}", CTX),
    ("namespace", "{% set ns = namespace(a=1, found=false) %}{% for i in l %}{% if i == 1 %}{% set ns.found = true %}{% endif %}{% set ns.a = ns.a + i %}{% endfor %}{{ ns.a }}{{ ns.found }}[{{ ns.missing }}]{{ ns }}", CTX),
    ("namespace_from_dict", "{% set ns = namespace({'x': 1}, y=2) %}{{ ns.x }}{{ ns.y }}", {}),
    ("set_block", "{% set block %}A{{ 1 + 1 }}B{% endset %}[{{ block }}]", {}),
    ("set_tuple", "{% set a, b = 1, 2 %}{{ a }}{{ b }}", {}),
    ("if_elif_else", "{% for i in [1, 2, 3] %}{% if i == 1 %}one{% elif i == 2 %}two{% else %}other{% endif %},{% endfor %}", {}),
    ("raise_exception", "{% if true %}{{ raise_exception('Bad role: ' ~ 'tool') }}{% endif %}", {}),
    ("raise_exception_in_loop", "a\nb\n{% for m in msgs %}{% if m.role == 'assistant' %}{{ raise_exception('Only user and system: ' + m.role) }}{% endif %}{% endfor %}", CTX),
    ("generation_tag", "{% for m in msgs %}{% generation %}{{ m.role }}{% endgeneration %};{% endfor %}", CTX),
    ("comment_multiline", "a{# line1\nline2 {{ not parsed }} #}b", {}),
    ("nested_brackets_in_tag", "{{ {'a': {'b': 1}} }}|{{ [[1], [2]] }}", {}),
    ("attr_priority_dict_method", "{{ d['items'] }}|{{ d.items()|list|length }}", CTX),
    ("syntax_python_colons", "{% if t: %}a{% else: %}b{% endif %}{% for x in l: %}{{ x }}{% endfor %}", CTX),
    ("syntax_unicode_names", "{% set größe = 3 %}{% for ключ in [größe] %}{{ ключ }}{% endfor %}", {}),
    ("syntax_tuples", "{% if n, %}yes{% endif %}{% set a = 1, 2 %}{{ a|length }}{% for x in 1, 2 %}{{ x }}{% endfor %}", CTX),
    ("lit_backslash_non_ascii", "{{ '\\é' }}|{{ '\\\\é' }}|{{ '\\🚀' }}", {}),
    ("unknown_filter_soft", "{% if false %}{{ x|nosuch }}{% endif %}{{ 'a' if true else x|no.such }}{{ (x is nosuch) if false }}", {}),
    ("unknown_filter_error", "{% if true %}{% for x in l %}{{ x|nosuch }}{% endfor %}{% endif %}", CTX),
    ("unknown_test_error", "{{ l is prime }}", CTX),
    ("call_kwargs", "{{ 'a,b,c'.split(',', maxsplit=1) }}", {}),
]


def render_cases(cases):
    out = []
    for name, template, context in cases:
        # Cases that use CTX refer to it as "shared" (stored once in the file).
        case = {"name": name, "template": template, "context": "shared" if context is CTX else context}
        try:
            case["expected"] = _compile_jinja_template(template).render(**context)
        except Exception as e:
            case["error"] = f"{type(e).__name__}: {e}"
        out.append(case)
    return out


def write(path: Path, data):
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path} ({len(data['cases'])} cases)")


if __name__ == "__main__":
    main()
