"""The tools of the tool-calls data set: Python standard-library functions with a JSON schema for their
parameters, a way to run them, argument generators, question and answer templates (a table read by
scripts/build_tool_data.py). Tool descriptions are the functions' own docstrings (PSF licence)."""

from __future__ import annotations

import base64
import calendar
import difflib
import fnmatch
import fractions
import hashlib
import heapq
import html
import inspect
import ipaddress
import keyword
import math
import posixpath
import random
import re
import shlex
import statistics
import string
import textwrap
import unicodedata
import urllib.parse
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_DESCRIPTION = 160
DAYS = list(calendar.day_name)
MONTHS = list(calendar.month_name)
# fmt: off
WORDS = ["apple", "banana", "cherry", "grape", "lemon", "mango", "orange", "peach", "pear", "plum"]
FILES = ["report.final.pdf", "notes.txt", "archive.tar.gz", "photo.jpeg", "main.py", "data.csv", "README"]
PATHS = ["/usr/local//lib/../share/doc", "docs/./guide/../api/index.html", "/var/log/nginx/access.log",
         "src/pkg/module.py", "/home/ana/projects/site/index.html", "build//out/./bin/tool"]
PHRASES = ["hello world", "the quick brown fox", "fish & chips <deluxe>", "a/b c?d=e", "Python is fun",
           "tea for two", "open source software", "rock 'n' roll"]
SENTENCES = ["The quick brown fox jumps over the lazy dog near the river bank.",
             "Python is a programming language that lets you work quickly and integrate systems effectively.",
             "Beautiful is better than ugly. Explicit is better than implicit."]
CHARS = ["é", "€", "ß", "→", "Ω", "ñ", "©", "½", "♥", "☃"]
NETWORKS = ["192.168.0.0/24", "10.0.0.0/8", "172.16.0.0/12", "192.168.1.0/28", "2001:db8::/120", "10.1.2.0/23"]
URLS = ["https://docs.python.org/3/library/json.html", "http://example.com:8080/path?q=1#top",
        "https://www.python.org/downloads/", "ftp://files.example.org/pub/readme.txt"]
COMMANDS = ['git commit -m "first commit"', "ls -la '/tmp/my files'", 'grep -r "def main" src',
            "tar -czf backup.tar.gz docs notes"]
# fmt: on


def describe(function: Callable[..., Any]) -> str:
    """The docstring's first prose paragraph (not a signature line), whitespace-normalised, first sentence(s)."""
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", inspect.getdoc(function) or "")]
    prose = [p for p in paragraphs if p and "->" not in p and not re.match(r"^\w+\(", p)]
    text, out = prose[0], ""
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        if out and len(out) + len(sentence) + 1 > MAX_DESCRIPTION:
            break
        out = f"{out} {sentence}".strip()
    return out if out.endswith((".", "!", "?")) else out + "."


@dataclass(frozen=True)
class Tool:
    """One stdlib function offered as a tool: how to ask for it, call it and phrase the answer."""

    name: str  # the tool's name (module_function)
    shown: str  # the function as Python knows it (math.gcd)
    function: Callable[..., Any]  # the documented function (its docstring describes the tool)
    parameters: dict[str, Any]  # name -> JSON schema
    run: Callable[..., Any]  # called with the arguments; its return value is the tool output
    arguments: Callable[[random.Random], dict[str, Any]]
    questions: tuple[str, ...]  # formatted with the arguments (and {shown} items)
    answer: str  # formatted with the arguments and {result}
    note: str = ""  # added to the description where the tool wraps the function

    def schema(self) -> dict[str, Any]:
        """The OpenAI function schema of the tool."""
        description = describe(self.function) + (f" {self.note}" if self.note else "")
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": description,
                "parameters": {
                    "type": "object",
                    "properties": self.parameters,
                    "required": list(self.parameters),
                },
            },
        }


def _pair_with_common_factor(rng: random.Random) -> dict[str, Any]:
    factor = rng.choice([2, 3, 4, 5, 6, 7, 8, 9, 12])
    return {"integers": [factor * rng.randint(2, 30), factor * rng.randint(2, 30)]}


def _date(rng: random.Random) -> dict[str, Any]:
    return {"year": rng.randint(1950, 2030), "month": rng.randint(1, 12), "day": rng.randint(1, 28)}


def _numbers(rng: random.Random) -> dict[str, Any]:
    return {"data": [rng.randint(1, 99) for _ in range(rng.randint(4, 7))]}


INT_LIST = {"type": "array", "items": {"type": "integer"}, "description": "The integers."}
NUM_LIST = {"type": "array", "items": {"type": "number"}, "description": "The numbers."}
YEAR = {"type": "integer", "description": "The year, e.g. 2024."}
MONTH = {"type": "integer", "description": "The month, 1-12."}
TEXT = {"type": "string", "description": "The text."}
PATH = {"type": "string", "description": "A file system path."}

# fmt: off
# One tool per block, read as a table: name, function, parameters, how to run it, arguments, questions, answer.
TOOLS = [
    Tool("math_gcd", "math.gcd", math.gcd, {"integers": INT_LIST}, lambda integers: math.gcd(*integers),
         _pair_with_common_factor,
         ("What is the greatest common divisor of {integers[0]} and {integers[1]}?",
          "Find the GCD of {integers[0]} and {integers[1]}."),
         "The greatest common divisor of {integers[0]} and {integers[1]} is {result}."),
    Tool("math_lcm", "math.lcm", math.lcm, {"integers": INT_LIST}, lambda integers: math.lcm(*integers),
         lambda rng: {"integers": [rng.randint(2, 40), rng.randint(2, 40)]},
         ("What is the least common multiple of {integers[0]} and {integers[1]}?",
          "Compute the LCM of {integers[0]} and {integers[1]}."),
         "The least common multiple of {integers[0]} and {integers[1]} is {result}."),
    Tool("math_factorial", "math.factorial", math.factorial,
         {"n": {"type": "integer", "description": "A non-negative integer."}}, math.factorial,
         lambda rng: {"n": rng.randint(3, 20)}, ("What is {n} factorial?", "Compute {n}!."), "{n}! is {result}."),
    Tool("math_comb", "math.comb", math.comb,
         {"n": {"type": "integer", "description": "Items to choose from."},
          "k": {"type": "integer", "description": "Items chosen."}}, math.comb,
         lambda rng: {"n": (n := rng.randint(5, 40)), "k": rng.randint(2, min(n - 1, 8))},
         ("How many ways can I choose {k} items out of {n}, if order does not matter?",
          "How many different {k}-person teams can be picked from {n} people?"),
         "There are {result} ways to choose {k} out of {n}."),
    Tool("math_perm", "math.perm", math.perm,
         {"n": {"type": "integer", "description": "Items to choose from."},
          "k": {"type": "integer", "description": "Items arranged."}}, math.perm,
         lambda rng: {"n": (n := rng.randint(5, 20)), "k": rng.randint(2, min(n - 1, 6))},
         ("In how many different orders can {k} of {n} runners take the first {k} places?",
          "How many ordered arrangements of {k} items out of {n} are there?"),
         "There are {result} ordered arrangements of {k} out of {n}."),
    Tool("math_isqrt", "math.isqrt", math.isqrt,
         {"n": {"type": "integer", "description": "A non-negative integer."}}, math.isqrt,
         lambda rng: {"n": rng.randint(50, 10**7)},
         ("What is the integer square root of {n}?", "What is the largest integer whose square is at most {n}?"),
         "The integer square root of {n} is {result}."),
    Tool("math_hypot", "math.hypot", math.hypot, {"coordinates": NUM_LIST},
         lambda coordinates: round(math.hypot(*coordinates), 6),
         lambda rng: {"coordinates": [rng.randint(1, 50), rng.randint(1, 50)]},
         ("How long is the hypotenuse of a right triangle with legs {coordinates[0]} and {coordinates[1]}?",
          "How far is the point ({coordinates[0]}, {coordinates[1]}) from the origin?"),
         "The distance is {result}.", "Returns the value rounded to 6 decimals."),
    Tool("math_radians", "math.radians", math.radians,
         {"x": {"type": "number", "description": "An angle in degrees."}}, lambda x: round(math.radians(x), 6),
         lambda rng: {"x": rng.choice([15, 30, 45, 60, 90, 120, 180, 270, 360])},
         ("Convert {x} degrees to radians.", "How many radians is an angle of {x} degrees?"),
         "{x} degrees is {result} radians.", "Returns the value rounded to 6 decimals."),
    Tool("statistics_mean", "statistics.mean", statistics.mean, {"data": NUM_LIST},
         lambda data: round(statistics.mean(data), 4), _numbers,
         ("What is the average of {data}?", "Compute the mean of these numbers: {data}."),
         "The mean is {result}.", "Returns the value rounded to 4 decimals."),
    Tool("statistics_median", "statistics.median", statistics.median, {"data": NUM_LIST}, statistics.median,
         _numbers, ("What is the median of {data}?", "Find the middle value of {data}."), "The median is {result}."),
    Tool("statistics_stdev", "statistics.stdev", statistics.stdev, {"data": NUM_LIST},
         lambda data: round(statistics.stdev(data), 4), _numbers,
         ("What is the sample standard deviation of {data}?",
          "How spread out are {data}? Give the sample standard deviation."),
         "The sample standard deviation is {result}.", "Returns the value rounded to 4 decimals."),
    Tool("calendar_isleap", "calendar.isleap", calendar.isleap, {"year": YEAR}, calendar.isleap,
         lambda rng: {"year": rng.choice([rng.randint(1600, 2400), 4 * rng.randint(400, 600)])},
         ("Is {year} a leap year?", "Does February have 29 days in {year}?"), "{year} {result:is|is not} a leap year."),
    Tool("calendar_weekday", "calendar.weekday", calendar.weekday,
         {"year": YEAR, "month": MONTH, "day": {"type": "integer", "description": "The day of the month, 1-31."}},
         calendar.weekday, _date,
         ("What day of the week was {year}-{month:02d}-{day:02d}?", "Which weekday falls on {day} {month_name} {year}?"),
         "{day} {month_name} {year} is a {result_day}."),
    Tool("calendar_monthrange", "calendar.monthrange", calendar.monthrange, {"year": YEAR, "month": MONTH},
         lambda year, month: list(calendar.monthrange(year, month)),
         lambda rng: {"year": rng.randint(1950, 2030), "month": rng.randint(1, 12)},
         ("How many days are there in {month_name} {year}?", "How long is {month_name} {year}, in days?"),
         "{month_name} {year} has {result[1]} days; it starts on a {first_day}."),
    Tool("os_path_splitext", "os.path.splitext", posixpath.splitext, {"path": PATH},
         lambda path: list(posixpath.splitext(path)), lambda rng: {"path": rng.choice(FILES)},
         ("What is the extension of the file name {path}?", "Split {path} into its name and extension."),
         "The extension of {path} is {extension}."),
    Tool("os_path_basename", "os.path.basename", posixpath.basename, {"path": PATH}, posixpath.basename,
         lambda rng: {"path": rng.choice(PATHS)},
         ("What is the last component of the path {path}?", "Which name does the path {path} end in?"),
         "The last component of {path} is '{result}'."),
    Tool("os_path_normpath", "os.path.normpath", posixpath.normpath, {"path": PATH}, posixpath.normpath,
         lambda rng: {"path": rng.choice(PATHS)},
         ("Normalize the path {path}.", "What is {path} without redundant separators and up-level references?"),
         "The normalized path is {result}."),
    Tool("urllib_parse_quote", "urllib.parse.quote", urllib.parse.quote, {"string": TEXT}, urllib.parse.quote,
         lambda rng: {"string": rng.choice(PHRASES)},
         ("Percent-encode '{string}' for use in a URL.", "How do I write '{string}' safely inside a URL path?"),
         "Percent-encoded, it is {result}."),
    Tool("urllib_parse_urlparse", "urllib.parse.urlparse", urllib.parse.urlparse,
         {"url": {"type": "string", "description": "The URL."}}, lambda url: urllib.parse.urlparse(url)._asdict(),
         lambda rng: {"url": rng.choice(URLS)},
         ("Which host and path does the URL {url} point to?", "Break the URL {url} into its parts."),
         "The scheme is {result[scheme]}, the host is {result[netloc]} and the path is {result[path]}.",
         "The tool returns the components as an object."),
    Tool("html_escape", "html.escape", html.escape, {"s": TEXT}, html.escape,
         lambda rng: {"s": rng.choice(['say "hi" <b>now</b>', "5 > 3 & 2 < 4", "Tom's <script>", "a & b"])},
         ("Escape this text for HTML: {s}", "How do I show {s} literally in an HTML page?"),
         "The HTML-safe version is: {result}"),
    Tool("textwrap_shorten", "textwrap.shorten", textwrap.shorten,
         {"text": TEXT, "width": {"type": "integer", "description": "The maximum length."}}, textwrap.shorten,
         lambda rng: {"text": rng.choice(SENTENCES), "width": rng.choice([20, 25, 30, 40])},
         ("Shorten this to at most {width} characters: {text}", "Give me a {width}-character summary line of: {text}"),
         "Shortened: {result}"),
    Tool("string_capwords", "string.capwords", string.capwords, {"s": TEXT}, string.capwords,
         lambda rng: {"s": rng.choice(PHRASES)},
         ("Capitalize every word of '{s}'.", "Write '{s}' in title case, word by word."), "It becomes '{result}'."),
    Tool("unicodedata_name", "unicodedata.name", unicodedata.name,
         {"chr": {"type": "string", "description": "A single character."}}, unicodedata.name,
         lambda rng: {"chr": rng.choice(CHARS)},
         ("What is the Unicode name of the character {chr}?", "What is {chr} called in Unicode?"),
         "The character {chr} is {result}."),
    Tool("unicodedata_lookup", "unicodedata.lookup", unicodedata.lookup,
         {"name": {"type": "string", "description": "A Unicode character name."}}, unicodedata.lookup,
         lambda rng: {"name": unicodedata.name(rng.choice(CHARS))},
         ("Which character has the Unicode name {name}?", "Show me the character named {name}."), "It is {result}."),
    Tool("hashlib_sha256", "hashlib.sha256", hashlib.sha256, {"text": TEXT},
         lambda text: hashlib.sha256(text.encode()).hexdigest(), lambda rng: {"text": rng.choice(PHRASES)},
         ("What is the SHA-256 hash of '{text}'?", "Give me the SHA-256 hex digest of the text '{text}'."),
         "The SHA-256 digest of '{text}' is {result}.", "The tool hashes the UTF-8 text and returns the hex digest."),
    Tool("zlib_crc32", "zlib.crc32", zlib.crc32, {"text": TEXT}, lambda text: zlib.crc32(text.encode()),
         lambda rng: {"text": rng.choice(PHRASES)},
         ("What is the CRC-32 checksum of '{text}'?", "Compute a CRC32 of the text '{text}'."),
         "The CRC-32 of '{text}' is {result}.", "The tool checksums the UTF-8 text."),
    Tool("base64_b64encode", "base64.b64encode", base64.b64encode, {"text": TEXT},
         lambda text: base64.b64encode(text.encode()).decode(), lambda rng: {"text": rng.choice(PHRASES)},
         ("Encode '{text}' in Base64.", "What is the Base64 form of '{text}'?"),
         "In Base64, '{text}' is {result}.", "The tool encodes the UTF-8 text and returns ASCII."),
    Tool("ipaddress_ip_network", "ipaddress.ip_network", ipaddress.ip_network,
         {"address": {"type": "string", "description": "A network in CIDR notation."}},
         lambda address: {"num_addresses": (n := ipaddress.ip_network(address)).num_addresses,
                          "netmask": str(n.netmask), "is_private": n.is_private},
         lambda rng: {"address": rng.choice(NETWORKS)},
         ("How many addresses does the network {address} hold?", "Is {address} a private network, and how big is it?"),
         "{address} holds {result[num_addresses]} addresses (netmask {result[netmask]}) and "
         "{result[is_private]:is|is not} private.", "The tool returns its size, netmask and whether it is private."),
    Tool("difflib_get_close_matches", "difflib.get_close_matches", difflib.get_close_matches,
         {"word": {"type": "string", "description": "The word to match."},
          "possibilities": {"type": "array", "items": {"type": "string"}, "description": "Candidate words."}},
         difflib.get_close_matches,
         lambda rng: {"word": (w := rng.choice(WORDS))[:-1] + rng.choice("aeiouxy"),
                      "possibilities": sorted([*rng.sample([x for x in WORDS if x != w], 3), w])},
         ("Which of {possibilities} is closest to the misspelled word '{word}'?",
          "I typed '{word}'. Which of these did I mean: {possibilities}?"),
         "The closest match to '{word}' is {matches}."),
    Tool("shlex_split", "shlex.split", shlex.split, {"s": {"type": "string", "description": "A shell command line."}},
         shlex.split, lambda rng: {"s": rng.choice(COMMANDS)},
         ("Split this command line into arguments the way a shell would: {s}", "What arguments does {s} pass?"),
         "The arguments are: {result}."),
    Tool("fnmatch_fnmatch", "fnmatch.fnmatch", fnmatch.fnmatch,
         {"name": {"type": "string", "description": "A file name."},
          "pat": {"type": "string", "description": "A shell-style pattern."}}, fnmatch.fnmatch,
         lambda rng: {"name": rng.choice(FILES), "pat": rng.choice(["*.py", "*.txt", "*.tar.*", "*.*", "data.???"])},
         ("Does {name} match the pattern {pat}?", "Would the glob {pat} pick up a file called {name}?"),
         "{name} {result:matches|does not match} {pat}."),
    Tool("keyword_iskeyword", "keyword.iskeyword", keyword.iskeyword,
         {"s": {"type": "string", "description": "A word."}}, keyword.iskeyword,
         lambda rng: {"s": rng.choice(["lambda", "yield", "print", "match", "async", "self", "nonlocal", "list"])},
         ("Is {s} a reserved keyword in Python?", "Can I name a variable {s}, or is it a Python keyword?"),
         "'{s}' {result:is|is not} a Python keyword."),
    Tool("heapq_nlargest", "heapq.nlargest", heapq.nlargest,
         {"n": {"type": "integer", "description": "How many."}, "iterable": NUM_LIST}, heapq.nlargest,
         lambda rng: {"n": rng.randint(2, 3), "iterable": [rng.randint(1, 99) for _ in range(7)]},
         ("What are the {n} largest numbers in {iterable}?", "Pick the top {n} values from {iterable}."),
         "The {n} largest are {result}."),
    Tool("fractions_Fraction", "fractions.Fraction", fractions.Fraction,
         {"numerator": {"type": "integer", "description": "The numerator."},
          "denominator": {"type": "integer", "description": "The denominator."}},
         lambda numerator, denominator: str(fractions.Fraction(numerator, denominator)),
         lambda rng: {"numerator": (f := rng.randint(2, 9)) * rng.randint(1, 12), "denominator": f * rng.randint(2, 12)},
         ("Simplify the fraction {numerator}/{denominator}.", "What is {numerator}/{denominator} in lowest terms?"),
         "{numerator}/{denominator} in lowest terms is {result}.", "The tool returns the reduced fraction as text."),
]
# fmt: on
