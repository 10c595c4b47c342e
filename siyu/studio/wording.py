"""The studio's own fixed messages in the page's language: why the editor cannot save a file
(siyu.studio.editing, siyu.language.project_files), the difference's note when there is no
git or no commit, and why a backtest cannot run (siyu.studio.backtest). They are made in
English (the modules that make them also serve the command line); a Chinese page words each
one it knows in Chinese, the file names and figures in it kept. A message it does not know
(a validator's problem, git's own error) is shown as it is."""

from __future__ import annotations

import re

# (the English message, anchored at both ends; the Chinese with the same named parts)
_FILE = r"(?P<file>.+?)"
_ZH: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), zh)
    for p, zh in [
        # a file the editor may not save, or the studio may not read
        (rf"{_FILE} is a link: the studio does not save it", "{file} 是一个链接：工作台不保存链接"),
        (
            rf"{_FILE} is not directly in journeys/: refused",
            "{file} 不直接在 journeys/ 中：拒绝保存",
        ),
        (rf"{_FILE} is not a regular file: refused", "{file} 不是普通文件：拒绝保存"),
        (
            rf"{_FILE} is not a regular file \(a folder, device or pipe\): refused",
            "{file} 不是普通文件（是文件夹、设备或管道）：拒绝读取",
        ),
        (
            rf"{_FILE} is larger than (?P<cap>[\d,]+) bytes \((?P<setting>\w+)\): refused",
            "{file} 超过 {cap} 字节（{setting}）：拒绝",
        ),
        (rf"{_FILE} not found", "找不到 {file}"),
        (rf"{_FILE} cannot be read \((?P<why>.*)\)", "{file} 无法读取（{why}）"),
        (
            rf"{_FILE} is not UTF-8 text \(bad byte at offset (?P<at>\d+)\)",
            "{file} 不是 UTF-8 文本（第 {at} 个字节有误）",
        ),
        (rf"{_FILE} is a loop of links: refused", "{file} 是循环链接：拒绝读取"),
        (
            rf"{_FILE} is a link leading outside (?P<where>\S+): refused",
            "{file} 是指向 {where} 之外的链接：拒绝读取",
        ),
        (rf"{_FILE} is outside (?P<where>\S+): refused", "{file} 在 {where} 之外：拒绝读取"),
        # the difference from the last commit
        ("git is not installed", "没有安装 git：无法与最近一次提交比较"),
        (r"git did not answer within (?P<s>[\d.]+) s", "git 在 {s} 秒内没有响应"),
        ("the project is not a git repository", "项目不是 git 仓库：无法与最近一次提交比较"),
        (rf"{_FILE} is not in the last commit yet", "{file} 尚未提交过"),
        (rf"{_FILE} as last committed \(HEAD\)", "{file} 最近一次提交的版本（HEAD）"),
        ("the committed version is not UTF-8 text", "提交的版本不是 UTF-8 文本"),
        (
            r"the committed version is larger than (?P<cap>[\d,]+) bytes \((?P<setting>\w+)\): "
            "refused",
            "提交的版本超过 {cap} 字节（{setting}）：无法比较",
        ),
        # why a backtest cannot run, or what it left out
        ("no customers in the database: nothing to replay", "数据库里没有顾客：没有可回测的内容"),
        (r"no database at (?P<where>.+)", "没有数据库：{where}"),
        (r"the database cannot be read: (?P<why>.+)", "数据库无法读取：{why}"),
        ("the studio stopped", "工作台已停止"),
    ]
]
# a message made of a known part and a validator's problem (`_problems` of the backtest)
_PREFIXES = [
    ("the editor's text: ", "编辑器中的文本："),
    ("the saved file is left out: ", "已保存的文件未参与回测："),
    ("the committed version is left out: ", "上次提交的版本未参与回测："),
]
_LINE = re.compile(r"^line (\d+): (.*?)(?: \(and (\d+) more\))?$")
_IN_FILE = re.compile(r"^([^:\s]+\.ya?ml): (line \d+: .*)$")  # a journey file's first problem


def studio_words(message: str, lang: str) -> str:
    """`message`, one of the studio's own, in `lang` ("zh" or "en")."""
    if lang != "zh":
        return message
    for pattern, zh in _ZH:
        found = pattern.fullmatch(message)
        if found:
            return zh.format(**found.groupdict())
    for english, chinese in _PREFIXES:
        if message.startswith(english):
            return chinese + _problem(message[len(english) :])
    in_file = _IN_FILE.match(message)
    if in_file:
        return f"{in_file.group(1)}：{_problem(in_file.group(2))}"
    return message


def _problem(text: str) -> str:
    """`_problems`'s "line N: MESSAGE (and K more)" with its own words in Chinese (the
    validator's message as it is)."""
    if text == "it cannot be read":
        return "无法读取"
    found = _LINE.match(text)
    if found is None:
        return studio_words(text, "zh")
    line, problem, more = found.groups()
    return f"第 {line} 行：{problem}" + (f"（另有 {more} 个问题）" if more else "")
