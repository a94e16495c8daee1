"""Document text is untrusted input: passages that address the assistant are recognised and set aside.

A document may carry text written for the model rather than the reader ("IMPORTANT INSTRUCTION TO THE AI ASSISTANT:
ignore the question ..."). Such a passage is not shown to the model, not quoted and not used as support
(rag/answer.py); the answer lists it under `set_aside`. A passage is recognised when one of its sentences, in
English, French, German or Luxembourgish,

- tells its reader to ignore or forget instructions, the question, the passages, the context or the rules;
- names an instruction or note *to* an AI, assistant, model or chatbot;
- speaks to an AI, assistant or model in the second person or the imperative ("you are an AI", "Assistant, answer");
- dictates the output ("answer exactly", "whatever the question", "do not mention this instruction").

The patterns are about the act of addressing a model, not about the topic: a policy that merely mentions "the AI
assistant" among the tools staff may use is not set aside. Case and accents are ignored.
"""

from __future__ import annotations

import re
import unicodedata

_AI = (
    r"(?:ai|a\.i\.|ki|ia|llm|gpt|chat ?bot|chatgpt|assistant|assistants|assistent|assistenten|assistentin|"
    r"model|modele|modell|sprachmodell|language model|modele de langage|intelligence artificielle|"
    r"artificial intelligence|kunstliche intelligenz|kenstlech intelligenz|ki-assistent|ai-assistant)"
)
_OVERRIDE = (
    r"(?:ignor(?:e|es|ez|er|ing)|disregard|forget|override|oubliez|oublie|ignorier\w*|"
    r"vergiss|vergessen|missachte\w*|ignoreier\w*|vergiess\w*)"
)
_TARGET = (
    r"(?:instruction|instructions|question|questions|passage|passages|prompt|rule|rules|context|document|"
    r"documents|consigne|consignes|regle|regles|contexte|anweisung|anweisungen|frage|fragen|regel|regeln|"
    r"kontext|dokument|dokumente|uweisung|uweisungen|fro|froen|reegel|reegelen|everything|tout|alles)"
)
_PATTERNS = [
    rf"\b{_OVERRIDE}\b[^.!?]{{0,60}}\b{_TARGET}\b",
    rf"\b(?:instructions?|note|notes|message|hinweis|anweisung\w*|consignes?|remarque|uweisung\w*|befehl)\b"
    rf"[^.!?]{{0,20}}\b(?:to|for|a|pour|aux?|an|fur|fir|un|den|die|der)\b[^.!?]{{0,20}}\b{_AI}\b",
    rf"\b(?:you are|you're|as an?|tu es|vous etes|en tant que|du bist|sie sind|als|du bass|dir sidd|als)\s+"
    rf"(?:an?|the|un|une|l'|le|la|ein|eine|den|der|die|en|eng|de)?\s*{_AI}\b",
    rf"\b(?:dear|hey|hello|cher|chere|liebe[rs]?|hallo|bonjour|salut|leiwen?|moien)\s+{_AI}\b",
    rf"^\W*{_AI}\s*[,:]",
    r"\b(?:answer|respond|reply|say|output|write|print)\s+(?:exactly|only|verbatim|precisely|with exactly)\b",
    r"\bwhatever the question\b|\bregardless of the question\b",
    r"\b(?:do not|don't|never)\s+(?:mention|reveal|disclose|tell)\b[^.!?]{0,30}\b(?:instruction|prompt|this)",
    r"\brepon\w*\s+(?:exactement|uniquement|seulement)\b|\bquelle que soit la question\b",
    r"\bne\s+(?:mentionne|revele|dis)\w*\s+pas\b[^.!?]{0,30}\b(?:consigne|instruction)",
    r"\bantworte\w*\s+(?:genau|nur|ausschlie\w*|wortlich)\b|\begal,?\s+(?:was|welche)\s+(?:die\s+)?frage\b",
    r"\berwahne\w*\s+(?:diese|die)\s+anweisung\w*\s+nicht\b",
    r"\bantwer\w*\s+(?:genee|just|nemmen)\b|\begal\s+wei\s+eng\s+fro\b",
]
_ADDRESSING = re.compile("|".join(f"(?:{p})" for p in _PATTERNS), re.IGNORECASE | re.MULTILINE)


def fold(text: str) -> str:
    """Lower case without accents: "Äntwert" -> "antwert", "répondez" -> "repondez"."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def addresses_assistant(text: str) -> bool:
    """Whether `text` (a passage or a sentence) addresses an AI assistant or model; see the module docstring."""
    return _ADDRESSING.search(fold(text)) is not None
