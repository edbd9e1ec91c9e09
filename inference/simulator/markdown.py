"""Realistic answers for the simulator: Markdown derived from the prompt, the way a chat model formats one.

A heading named after the question, an introduction that quotes it, a list of points, a fenced code block in the
language the prompt asks for (Python when it names none), a comparison table and a closing line. The sections are
kept whole: as many as fit in `max_tokens` are sent (a small budget gets a short answer that still ends its turn;
a budget below the first paragraph is cut, with stop reason `max_tokens`), so callers that ask for a few tokens keep
working and the web chat gets the full answer.
"""

from __future__ import annotations

import re

# Words in the prompt -> (fence info string, display name). Checked in order: "typescript" before "script".
LANGUAGES: list[tuple[str, str, str]] = [
    (r"\btype ?script\b|\bts\b", "typescript", "TypeScript"),
    (r"\bjava ?script\b|\bjs\b|\bnode(\.js)?\b", "javascript", "JavaScript"),
    (r"\brust\b", "rust", "Rust"),
    (r"\bgo(lang)?\b", "go", "Go"),
    (r"\bjava\b", "java", "Java"),
    (r"\bc\+\+|\bcpp\b", "cpp", "C++"),
    (r"\bruby\b", "ruby", "Ruby"),
    (r"\bsql\b|\bpostgres(ql)?\b", "sql", "SQL"),
    (r"\bbash\b|\bshell\b|\bsh\b", "bash", "Bash"),
    (r"\bhtml\b", "html", "HTML"),
    (r"\bpython\b", "python", "Python"),
]

CODE: dict[str, str] = {
    "python": 'def {name}(items: list[str]) -> dict[str, int]:\n    """Count each item once."""\n'
              '    counts: dict[str, int] = {{}}\n    for item in items:\n'
              '        counts[item] = counts.get(item, 0) + 1\n    return counts\n\n\n'
              'print({name}(["a", "b", "a"]))',
    "typescript": "export function {name}(items: string[]): Map<string, number> {{\n"
                  "  const counts = new Map<string, number>();\n  for (const item of items) {{\n"
                  "    counts.set(item, (counts.get(item) ?? 0) + 1);\n  }}\n  return counts;\n}}",
    "javascript": "function {name}(items) {{\n  const counts = {{}};\n  for (const item of items) {{\n"
                  "    counts[item] = (counts[item] || 0) + 1;\n  }}\n  return counts;\n}}\n\n"
                  'console.log({name}(["a", "b", "a"]));',
    "rust": "use std::collections::HashMap;\n\nfn {name}(items: &[&str]) -> HashMap<String, usize> {{\n"
            "    let mut counts = HashMap::new();\n    for item in items {{\n"
            "        *counts.entry(item.to_string()).or_insert(0) += 1;\n    }}\n    counts\n}}",
    "go": "func {camel}(items []string) map[string]int {{\n\tcounts := make(map[string]int)\n"
          "\tfor _, item := range items {{\n\t\tcounts[item]++\n\t}}\n\treturn counts\n}}",
    "java": "static Map<String, Integer> {camel}(List<String> items) {{\n"
            "    Map<String, Integer> counts = new HashMap<>();\n"
            "    for (String item : items) {{\n        counts.merge(item, 1, Integer::sum);\n    }}\n"
            "    return counts;\n}}",
    "cpp": "std::map<std::string, int> {name}(const std::vector<std::string>& items) {{\n"
           "    std::map<std::string, int> counts;\n    for (const auto& item : items) {{\n"
           "        ++counts[item];\n    }}\n    return counts;\n}}",
    "ruby": "def {name}(items)\n  items.each_with_object(Hash.new(0)) {{ |item, counts| counts[item] += 1 }}\nend",
    "sql": "SELECT item, count(*) AS occurrences\nFROM {name}\nGROUP BY item\nORDER BY occurrences DESC\nLIMIT 10;",
    "bash": "#!/usr/bin/env bash\nset -euo pipefail\n\n# {name}: count each line once\n"
            "sort \"$1\" | uniq -c | sort -rn | head -n 10",
    "html": "<section class=\"{name}\">\n  <h2>Counts</h2>\n  <ul>\n    <li>a: 2</li>\n    <li>b: 1</li>\n"
            "  </ul>\n</section>",
}

STOP_WORDS = {"a", "an", "the", "in", "on", "of", "to", "for", "and", "or", "me", "my", "please", "how", "what",
              "is", "are", "do", "does", "can", "you", "i", "with", "write", "show", "explain", "tell", "about",
              "using", "use", "some", "it", "this", "that", "give", "example", "code"}


def language_of(prompt: str) -> tuple[str, str]:
    lowered = prompt.lower()
    for pattern, fence, display in LANGUAGES:
        if re.search(pattern, lowered):
            return fence, display
    return "python", "Python"


def _topic_words(prompt: str, language: str) -> list[str]:
    words = re.findall(r"[A-Za-z][A-Za-z0-9+#-]*", prompt)
    skip = STOP_WORDS | {language.lower()}
    return [w for w in words if w.lower() not in skip][:6] or ["your", "question"]


def sections(prompt: str, *, digest: str, where: str, model: str) -> list[str]:
    """The answer's sections, in order; each is complete Markdown and ends with a blank line."""
    fence, language = language_of(prompt)
    words = _topic_words(prompt, language)
    title = " ".join(words[:5]).strip().capitalize()
    name = "_".join(w.lower() for w in words[:3] if w.isidentifier())[:40] or "count_items"
    camel = "".join(w.capitalize() for w in name.split("_")) or "CountItems"
    camel = camel[0].lower() + camel[1:]
    asked = " ".join(prompt.split())
    if len(asked) > 160:
        asked = asked[:160] + " …"
    seed = int(digest[:4], 16)
    points = [
        f"**Start small.** Make the simplest version of *{title.lower()}* work end to end before optimising.",
        "**Measure, then change.** Keep one number you trust and compare before and after each change.",
        "**Handle the edges.** Empty input, duplicates and very large input deserve a test each.",
        "**Write it down.** A short note on why you chose this approach saves the next reader an hour.",
    ]
    rotated = points[seed % len(points):] + points[:seed % len(points)]
    rows = [("Straightforward loop", "O(n)", "Small inputs, clarity first"),
            ("Library helper", "O(n)", "Everyday code"),
            ("Streaming / chunked", "O(n), low memory", "Inputs larger than memory")]
    table = ("| Approach | Cost | Best for |\n|---|---|---|\n"
             + "\n".join(f"| {a} | {c} | {b} |" for a, c, b in rows))
    return [
        f"## {title}\n\nSimulated answer {digest[:8]} from {where} ({model}). You asked: {asked}\n\n",
        "Here is how I would approach it:\n\n" + "\n".join(f"{i}. {p}" for i, p in enumerate(rotated, 1)) + "\n\n",
        f"### Example in {language}\n\n```{fence}\n{CODE[fence].format(name=name, camel=camel)}\n```\n\n",
        f"### Trade-offs\n\n{table}\n\n",
        "> The simulator writes this answer from your question, so the same question always gets the same "
        "answer.\n\nWant me to go deeper on any of these points?\n",
    ]


def fitted(parts: list[str], max_chars: int) -> str:
    """As many whole sections as fit in max_chars; at least the first one (the caller cuts it if too long)."""
    text = parts[0]
    for part in parts[1:]:
        if len(text.rstrip()) + len(part.rstrip()) + 2 > max_chars:
            break
        text += part
    return text.rstrip()
