#!/usr/bin/env python3
"""The synthetic conversations troupe-demo is trained on, and the problems it is judged by.

Every task has an exact answer and a worked reasoning, written the way DeepSeek-R1 answers: the
reasoning goes inside <think>...</think>, the answer after it. Pure Python (no torch), so the
generator is checked here and reused by tools/train_demo_model.py:

  addition      "What is 4821 + 379?"      column by column from the right, with the carries; answer "5200"
  subtraction   "What is 4821 - 379?"      column by column, with the borrows; negative results too
  counting      "How many r's are in strawberry?"   spelled, a running count at each match
  reversal      "Reverse the word planet."  spelled, spelled backwards, joined
  sorting       "Sort 42, 7, 19 from smallest to largest."  repeated selection of the smallest (largest)
  chat          greetings, who are you, thanks, goodbye (fixed answers)

A sample is {"task", "messages" (the conversation up to the user's question, maybe with a system
prompt and an earlier turn), "reasoning", "answer"}. The completion the model learns is
reasoning + "\\n</think>\\n\\n" + answer + EOS after the R1 generation prompt "<｜Assistant｜><think>\\n".

usage: python3 tools/demo_tasks.py --seed 7 --count 5      (prints samples)
"""
import argparse
import json
import random

# Words for counting and reversal: common English words of 3 to 10 letters (written here, not fetched).
WORDS = """
apple table chair house river water stone light night green black white brown music paper pencil
window garden flower planet rocket orange banana cherry lemon grape melon bread butter cheese honey
sugar salt pepper tomato potato carrot onion garlic forest desert island ocean valley mountain cloud
storm thunder winter summer spring autumn morning evening minute second hour number letter word
sentence story book library school teacher student doctor farmer driver singer dancer painter writer
engine wheel bicycle train plane boat bridge road street city village country world earth moon star
comet galaxy silver golden copper iron metal glass plastic rubber cotton wool silk leather button
pocket jacket shirt shoes socks hat glove scarf blanket pillow mirror candle lamp clock phone camera
radio screen keyboard mouse printer cable socket battery signal channel network server cluster
kernel memory buffer thread socket packet router switch model token vector matrix tensor layer
expert troupe actor stage pipeline worker leader follower queue stream batch cache block page
strawberry blueberry raspberry pineapple coconut avocado mango peach plum apricot kiwi papaya
elephant giraffe monkey tiger lion zebra horse donkey rabbit turtle dolphin whale shark parrot
penguin eagle falcon sparrow pigeon spider beetle butterfly dragon unicorn wizard castle knight
princess kingdom crown sword shield arrow bottle basket bucket ladder hammer needle scissors
mississippi banana bookkeeper committee balloon coffee letter cookie puzzle jazz pizza yellow
happy quick quiet silent gentle simple little middle bottle kettle rabbit carrot mirror hello
""".split()
WORDS = sorted(set(WORDS))
LETTERS = "abcdefghijklmnopqrstuvwxyz"
COLUMNS = ["ones", "tens", "hundreds", "thousands", "ten-thousands", "hundred-thousands"]
NAME = "troupe-demo"
SYSTEM_PROMPTS = ["You are a helpful assistant.", "You are troupe-demo, a small helpful model.",
                  "Answer the question. Think step by step."]
CAN_DO = "I can add and subtract whole numbers, count letters in a word, reverse words and sort numbers."


def digits_count(rng, low=1, high=4):
    return rng.randint(low, high)


def random_number(rng, max_digits=4):
    n = digits_count(rng, 1, max_digits)
    return rng.randint(0 if n == 1 else 10 ** (n - 1), 10 ** n - 1)


def column_digits(value, width):
    return [(value // 10 ** i) % 10 for i in range(width)]


def addition(rng):
    a, b = random_number(rng), random_number(rng)
    q = rng.choice(["What is {a} + {b}?", "Compute {a} + {b}.", "Add {a} and {b}.", "{a} + {b} = ?",
                    "What is the sum of {a} and {b}?"]).format(a=a, b=b)
    width = max(len(str(a)), len(str(b)))
    da, db = column_digits(a, width), column_digits(b, width)
    lines = [f"I add {a} and {b} column by column, starting from the right."]
    carry, written = 0, []
    for i in range(width):
        s = da[i] + db[i] + carry
        terms = f"{da[i]} + {db[i]}" + (f" + {carry}" if carry else "")
        lines.append(f"{COLUMNS[i]}: {terms} = {s}, write {s % 10}, carry {s // 10}.")
        written.append(s % 10)
        carry = s // 10
    if carry:
        lines.append(f"The last carry {carry} becomes the leading digit.")
        written.append(carry)
    result = a + b
    assert int("".join(str(d) for d in reversed(written))) == result
    lines.append(f"Reading the written digits from the last to the first gives {result}.")
    return q, "\n".join(lines), f"{result}"


def subtraction(rng):
    a, b = random_number(rng), random_number(rng)
    q = rng.choice(["What is {a} - {b}?", "Compute {a} - {b}.", "Subtract {b} from {a}.", "{a} - {b} = ?",
                    "What is {a} minus {b}?"]).format(a=a, b=b)
    big, small = (a, b) if a >= b else (b, a)
    lines = []
    if a < b:
        lines.append(f"{a} is smaller than {b}, so the result is negative: {a} - {b} = -({b} - {a}).")
    lines.append(f"I subtract {small} from {big} column by column, starting from the right.")
    width = len(str(big))
    dg, ds = column_digits(big, width), column_digits(small, width)
    borrow, written = 0, []
    for i in range(width):
        top = dg[i] - borrow
        top_text = f"{dg[i]} - {borrow}" if borrow else f"{dg[i]}"
        if top < ds[i]:
            lines.append(f"{COLUMNS[i]}: {top_text} - {ds[i]} is below zero, borrow 10: "
                         f"{top + 10} - {ds[i]} = {top + 10 - ds[i]}, write {top + 10 - ds[i]}, borrow 1.")
            written.append(top + 10 - ds[i])
            borrow = 1
        else:
            lines.append(f"{COLUMNS[i]}: {top_text} - {ds[i]} = {top - ds[i]}, write {top - ds[i]}, borrow 0.")
            written.append(top - ds[i])
            borrow = 0
    diff = big - small
    assert borrow == 0 and int("".join(str(d) for d in reversed(written))) == diff
    raw = "".join(str(d) for d in reversed(written))
    if raw != str(diff):
        lines.append(f"Reading the written digits from the last to the first gives {raw}, which is {diff}.")
    else:
        lines.append(f"Reading the written digits from the last to the first gives {diff}.")
    result = a - b
    if a < b:
        lines.append(f"With the sign: {result}.")
    return q, "\n".join(lines), f"{result}"


def counting(rng):
    word = rng.choice(WORDS)
    letter = rng.choice(word) if rng.random() < 0.75 else rng.choice(LETTERS)
    q = rng.choice(["How many {l}'s are in {w}?", "How many times does the letter {l} appear in {w}?",
                    "Count the letter {l} in the word {w}.", "How many {l}'s does {w} have?"]).format(l=letter, w=word)
    count, marks = 0, []
    for c in word:
        if c == letter:
            count += 1
            marks.append(f"{c} ({count})")
        else:
            marks.append(c)
    lines = [f"I spell {word}: {' '.join(word)}.",
             f"I count each {letter} as I go: {' '.join(marks)}.",
             f"So {letter} appears {count} time{'' if count == 1 else 's'}."]
    answer = f"There {'is' if count == 1 else 'are'} {count} {letter}'s in {word}."
    if count == 1:
        answer = f"There is 1 {letter} in {word}."
    return q, "\n".join(lines), answer


def reversal(rng):
    word = rng.choice(WORDS)
    q = rng.choice(["Reverse the word {w}.", "What is {w} spelled backwards?", "Write {w} backwards.",
                    "Reverse the letters of {w}."]).format(w=word)
    back = word[::-1]
    lines = [f"I spell {word}: {' '.join(word)}.",
             f"Backwards the letters are: {' '.join(back)}.",
             f"Joined together: {back}."]
    return q, "\n".join(lines), f"{word} backwards is {back}."


def sorting(rng):
    n = rng.randint(3, 5)
    values = [rng.randint(0, 999) if rng.random() < 0.25 else rng.randint(0, 99) for _ in range(n)]
    ascending = rng.random() < 0.7
    listed = ", ".join(str(v) for v in values)
    order = "from smallest to largest" if ascending else "from largest to smallest"
    q = rng.choice(["Sort {v} {o}.", "Sort these numbers {o}: {v}.", "Put {v} in order {o}."]).format(v=listed, o=order)
    left, picked, lines = list(values), [], []
    pick = "smallest" if ascending else "largest"
    while len(left) > 1:
        best = min(left) if ascending else max(left)
        lines.append(f"The {pick} of {', '.join(str(v) for v in left)} is {best}.")
        picked.append(best)
        left.remove(best)
    lines.append(f"Only {left[0]} is left.")
    picked.append(left[0])
    assert picked == sorted(values, reverse=not ascending)
    result = ", ".join(str(v) for v in picked)
    lines.append(f"In order: {result}.")
    return q, "\n".join(lines), result


CHATS = [
    (["Hi", "Hello", "Hello!", "Hi there", "Hey", "Good morning", "Good evening", "Hello, how are you?"],
     "The user greets me. I greet them back and say what I can do.",
     f"Hello! I am {NAME}. {CAN_DO}"),
    (["Who are you?", "What is your name?", "What are you?", "Introduce yourself."],
     "The user asks who I am.",
     f"I am {NAME}, a small DeepSeek-style model trained by the troupe team. {CAN_DO}"),
    (["What can you do?", "How can you help me?", "What are you good at?", "Help"],
     "The user asks what I can do.",
     CAN_DO + " Ask me, for example: What is 128 + 256?"),
    (["Thanks", "Thank you!", "Thanks a lot", "Great, thank you."],
     "The user thanks me.",
     "You are welcome!"),
    (["Bye", "Goodbye", "See you later", "Bye!"],
     "The user says goodbye.",
     "Goodbye! Come back when you have more numbers to add."),
]


def chat(rng):
    questions, reasoning, answer = rng.choice(CHATS)
    return rng.choice(questions), reasoning, answer


TASKS = {"addition": addition, "subtraction": subtraction, "counting": counting, "reversal": reversal,
         "sorting": sorting, "chat": chat}
TRAIN_MIX = {"addition": 0.22, "subtraction": 0.23, "counting": 0.1, "reversal": 0.1, "sorting": 0.3, "chat": 0.05}
EVAL_TASKS = ["addition", "subtraction", "counting", "reversal", "sorting"]


def sample(rng, task=None, context=True):
    """One conversation. With `context`, sometimes a system prompt and an earlier turn."""
    if task is None:
        task = rng.choices(list(TRAIN_MIX), weights=list(TRAIN_MIX.values()))[0]
    q, reasoning, answer = TASKS[task](rng)
    messages = []
    if context and rng.random() < 0.15:
        messages.append({"role": "system", "content": rng.choice(SYSTEM_PROMPTS)})
    if context and rng.random() < 0.12:
        q0, r0, a0 = TASKS[rng.choice(list(TASKS))](rng)
        messages.append({"role": "user", "content": q0})
        messages.append({"role": "assistant", "content": f"<think>\n{r0}\n</think>\n\n{a0}"})
    messages.append({"role": "user", "content": q})
    return {"task": task, "messages": messages, "reasoning": reasoning, "answer": answer}


def problems(seed, count):
    """The judged problems: `count` bare questions (no system prompt, one turn) spread evenly over
    EVAL_TASKS, drawn with `seed` (training draws with another)."""
    rng = random.Random(seed)
    return [sample(rng, EVAL_TASKS[i % len(EVAL_TASKS)], context=False) for i in range(count)]


def completion(s):
    """What the model writes after the R1 generation prompt `<｜Assistant｜><think>\\n`."""
    return f"{s['reasoning']}\n</think>\n\n{s['answer']}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--count", type=int, default=6)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    for task in TASKS:
        s = sample(rng, task)
        print(json.dumps(s["messages"], ensure_ascii=False))
        print(completion(s))
        print("-" * 40)


if __name__ == "__main__":
    main()
