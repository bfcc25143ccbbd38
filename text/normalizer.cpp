#include "text/normalizer.hpp"

#ifdef TROUPE_HAVE_ICU
#include <unicode/unorm2.h>
#include <unicode/ustring.h>
#endif

namespace troupe {
namespace {

bool is_ascii(std::string_view text) {
  for (unsigned char c : text)
    if (c >= 0x80) return false;
  return true;
}

void unicode_form(NormalizerStep::Kind kind, std::string& text) {
  if (is_ascii(text)) return;  // every normalization form leaves ASCII as it is
#ifdef TROUPE_HAVE_ICU
  UErrorCode status = U_ZERO_ERROR;
  const UNormalizer2* normalizer = nullptr;
  switch (kind) {
    case NormalizerStep::Kind::nfc: normalizer = unorm2_getNFCInstance(&status); break;
    case NormalizerStep::Kind::nfd: normalizer = unorm2_getNFDInstance(&status); break;
    case NormalizerStep::Kind::nfkc: normalizer = unorm2_getNFKCInstance(&status); break;
    default: normalizer = unorm2_getNFKDInstance(&status); break;
  }
  if (U_FAILURE(status)) return;
  std::u16string wide(text.size() + 1, u'\0');
  int32_t wide_length = 0;
  u_strFromUTF8(reinterpret_cast<UChar*>(wide.data()), static_cast<int32_t>(wide.size()), &wide_length, text.data(),
                static_cast<int32_t>(text.size()), &status);
  if (U_FAILURE(status)) return;
  if (unorm2_isNormalized(normalizer, reinterpret_cast<const UChar*>(wide.data()), wide_length, &status) &&
      U_SUCCESS(status))
    return;
  status = U_ZERO_ERROR;
  std::u16string normalized(static_cast<size_t>(wide_length) * 4 + 16, u'\0');
  const int32_t normalized_length =
      unorm2_normalize(normalizer, reinterpret_cast<const UChar*>(wide.data()), wide_length,
                       reinterpret_cast<UChar*>(normalized.data()), static_cast<int32_t>(normalized.size()), &status);
  if (U_FAILURE(status)) return;
  std::string out(static_cast<size_t>(normalized_length) * 3 + 4, '\0');
  int32_t out_length = 0;
  u_strToUTF8(out.data(), static_cast<int32_t>(out.size()), &out_length,
              reinterpret_cast<const UChar*>(normalized.data()), normalized_length, &status);
  if (U_FAILURE(status)) return;
  out.resize(static_cast<size_t>(out_length));
  text = std::move(out);
#else
  (void)kind;
#endif
}

void replace_all(std::string& text, const std::string& pattern, const std::string& content) {
  if (pattern.empty() || text.find(pattern) == std::string::npos) return;
  std::string out;
  out.reserve(text.size() + text.size() / 4);
  size_t pos = 0;
  for (size_t hit = text.find(pattern); hit != std::string::npos; hit = text.find(pattern, pos)) {
    out.append(text, pos, hit - pos).append(content);
    pos = hit + pattern.size();
  }
  out.append(text, pos, std::string::npos);
  text = std::move(out);
}

}  // namespace

bool Normalizer::unicode_forms_available() {
#ifdef TROUPE_HAVE_ICU
  return true;
#else
  return false;
#endif
}

void Normalizer::run(std::string_view text, std::string& out) const {
  out.assign(text);
  for (const auto& step : steps_) {
    switch (step.kind) {
      case NormalizerStep::Kind::nfc:
      case NormalizerStep::Kind::nfd:
      case NormalizerStep::Kind::nfkc:
      case NormalizerStep::Kind::nfkd:
        unicode_form(step.kind, out);
        break;
      case NormalizerStep::Kind::prepend:
        if (!out.empty()) out.insert(0, step.content);
        break;
      case NormalizerStep::Kind::replace:
        replace_all(out, step.pattern, step.content);
        break;
      case NormalizerStep::Kind::lowercase:
        for (char& c : out)
          if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        break;
    }
  }
}

}  // namespace troupe
