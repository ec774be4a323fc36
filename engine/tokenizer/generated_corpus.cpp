// The English text the generated tokenizer is trained on: plain prose,
// dialogue, numbers, a list and a little code, so common words, punctuation,
// digits and whitespace all get merges. Changing it changes every generated
// tokenizer (and tests/data/tokenizer/generated_*.tokenizer.json).
#include "engine/tokenizer/generated_corpus.h"

namespace qllm {

const char* generated_tokenizer_corpus() {
  return R"corpus(The morning was cold and clear. The river ran quickly under the old stone bridge,
and the people of the town walked over it on their way to the market. There were
apples and pears, bread and cheese, fish from the coast and flowers from the hills.
A small boy held his mother's hand and asked her why the water never stopped.
"Because it comes from the mountains," she said, "and the mountains are always giving."

In the afternoon the weather changed. Clouds came in from the west, and the wind
turned the leaves over so that the trees looked silver. The farmers looked at the
sky, then at each other, and began to bring the animals in. By evening it was
raining hard, and the lights of the houses shone yellow through the wet streets.

Chapter 2

When the rain stopped, the town was quiet. The baker was the first to open his
door; he always said that the best bread is made before anyone is awake to want it.
He put on his apron, lit the oven, and mixed flour, water, salt and yeast in a large
wooden bowl. While the dough was rising he swept the floor and wrote the day's
prices on a board: white bread 2.50, brown bread 2.75, six rolls for 3.00.

The teacher arrived at the school at half past seven. She had thirty-two students,
and she knew all of their names, their favourite books, and which of them would
forget their homework. Today they would learn about numbers: how to add and
subtract, how to multiply, and why 7 times 8 is 56 and not 54. "Write it down,"
she told them, "and then check it again. A number you have checked is a number
you can trust."

Some facts that every student should know:
- There are 365 days in a year, and 366 in a leap year.
- Water freezes at 0 degrees and boils at 100 degrees (Celsius).
- The light from the sun takes about 8 minutes to reach the earth.
- A week has 7 days; a day has 24 hours; an hour has 60 minutes.

Later that week the town held its summer fair. There was music in the square,
children ran between the stalls, and an old man sold maps of places that nobody
in the town had ever seen. "Where is this?" asked a girl, pointing at a long blue
line. "That is a river in the north," he said. "It is so wide that you cannot see
the other side. I walked along it for forty days when I was young."

She bought the map for one coin and carried it home carefully. That night she
spread it on the kitchen table and traced the river with her finger, from the
mountains to the sea, and she decided that one day she would walk there too.

Notes on writing clear instructions:
1. Say what the reader should do first, then explain why.
2. Use short sentences. Use common words. Give one example for each rule.
3. If a step can fail, say what the reader will see and what to do next.
4. Read the text again the next day; remove every word that does not help.

A small program that counts words:

def count_words(text):
    counts = {}
    for word in text.lower().split():
        word = word.strip(".,;:!?\"'()")
        if word:
            counts[word] = counts.get(word, 0) + 1
    return counts

if __name__ == "__main__":
    result = count_words("the cat and the dog and the bird")
    for word, n in sorted(result.items()):
        print(f"{word}: {n}")

The output of the program is a list of words with the number of times each one
appears: and: 2, bird: 1, cat: 1, dog: 1, the: 3. It is a simple idea, but the same
method, counting how often things happen together, is used in many places, from
the study of language to the design of better tools for reading and writing.

In the autumn the days grew shorter and the nights grew longer. The trees lost
their leaves, the birds flew south, and the farmers stored their grain for the
winter. People lit fires in their homes and told stories: stories about the river,
about the mountains, about travellers who had come from far away and had never
left. Every story was a little different each time it was told, and that, the
old people said, was how you knew it was still alive.

Questions for discussion:
Why did the baker open his shop so early? What did the teacher mean when she said
that a checked number can be trusted? Would you buy a map of a place you have
never seen? What would you take with you on a walk of forty days?
)corpus";
}

}  // namespace qllm
