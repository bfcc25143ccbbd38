#pragma once
// Added tokens (`added_tokens` of tokenizer.json): matched in the text before the model runs,
// leftmost then longest first, honouring lstrip / rstrip / single_word.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace troupe {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
  bool normalized = false;
};

// A slice of text: either plain text (id < 0) or one matched added token.
struct TextSegment {
  size_t begin = 0;
  size_t end = 0;
  int32_t id = -1;
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher();
  void add(const AddedToken& token);
  bool empty() const { return tokens_.empty(); }

  // Appends the segments of text[begin, end) to out (plain segments may be empty-free).
  void split(std::string_view text, std::vector<TextSegment>& out) const;

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> children;
    int32_t token = -1;  // index into tokens_
  };
  // Longest token starting at pos: (token index, end) or (-1, pos).
  std::pair<int32_t, size_t> longest_at(std::string_view text, size_t pos) const;
  bool word_boundaries_ok(std::string_view text, size_t begin, size_t end) const;

  std::vector<AddedToken> tokens_;
  std::vector<Node> nodes_;                 // nodes_[0] is the root
  std::array<int32_t, 256> root_children_;  // fast first-byte table
};

}  // namespace troupe
