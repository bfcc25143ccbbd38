#include "models/stage_reader.hpp"

#include <algorithm>
#include <tuple>

#include "runtime/weight_store.hpp"

namespace troupe {
namespace {

bool contains(const std::string& s, const char* what) { return s.find(what) != std::string::npos; }

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// The other names fused with `name` when it is the first of a group ("...q_proj.weight" ->
// {q, k, v}; "...gate_proj.bias" -> {gate, up}), else empty.
std::vector<std::string> fused_group_of(const std::string& name) {
  for (const char* kind : {".weight", ".bias"}) {
    const std::string q = std::string("self_attn.q_proj") + kind, gate = std::string("gate_proj") + kind;
    if (ends_with(name, q)) {
      const std::string stem = name.substr(0, name.size() - q.size()) + "self_attn.";
      return {name, stem + "k_proj" + kind, stem + "v_proj" + kind};
    }
    if (ends_with(name, "." + gate)) {
      const std::string stem = name.substr(0, name.size() - gate.size());
      return {name, stem + "up_proj" + kind};
    }
  }
  return {};
}

// A plan entry: one tensor, or a fused group (the names in row order).
struct Unit {
  std::vector<TensorView> views;
  LoadOrderKey key;
};

}  // namespace

bool LoadOrderKey::operator<(const LoadOrderKey& o) const {
  return std::tie(section, layer, part) < std::tie(o.section, o.layer, o.part);
}

LoadOrderKey load_order_key(const std::string& name) {
  LoadOrderKey key;
  const std::string marker = "layers.";
  const size_t at = name.find(marker);
  if (at != std::string::npos) {
    size_t end = at + marker.size();
    int64_t layer = 0;
    bool digits = false;
    while (end < name.size() && name[end] >= '0' && name[end] <= '9' && layer < (int64_t(1) << 40)) {
      layer = layer * 10 + (name[end++] - '0');
      digits = true;
    }
    if (digits && end < name.size() && name[end] == '.') {
      key.section = 1;
      key.layer = layer;
      const std::string rest = name.substr(end + 1);
      if (rest.rfind("input_layernorm", 0) == 0) key.part = 0;
      else if (rest.rfind("self_attn", 0) == 0) key.part = 1;
      else if (rest.rfind("post_attention_layernorm", 0) == 0) key.part = 2;
      else if (rest.rfind("mlp.gate.", 0) == 0) key.part = 3;  // the MoE router, before its experts
      else if (rest.rfind("mlp", 0) == 0) key.part = 4;
      else key.part = 5;
      return key;
    }
  }
  key.section = contains(name, "embed_tokens") ? 0 : 2;
  return key;
}

bool natural_less(const std::string& a, const std::string& b) {
  size_t i = 0, j = 0;
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  while (i < a.size() && j < b.size()) {
    if (digit(a[i]) && digit(b[j])) {
      size_t ei = i, ej = j;
      while (ei < a.size() && digit(a[ei])) ++ei;
      while (ej < b.size() && digit(b[ej])) ++ej;
      // Leading zeros aside, the longer run is the larger number.
      size_t si = i, sj = j;
      while (si + 1 < ei && a[si] == '0') ++si;
      while (sj + 1 < ej && b[sj] == '0') ++sj;
      if (ei - si != ej - sj) return ei - si < ej - sj;
      const int c = a.compare(si, ei - si, b, sj, ej - sj);
      if (c != 0) return c < 0;
      i = ei;
      j = ej;
      continue;
    }
    if (a[i] != b[j]) return a[i] < b[j];
    ++i;
    ++j;
  }
  return a.size() - i < b.size() - j;
}

StageReader::StageReader(const WeightStore& store, const std::function<bool(const std::string&)>& wanted,
                         ReadAhead::Options options)
    : store_(store) {
  std::vector<TensorView> views;
  for (const std::string& name : store.names()) {
    if (!wanted(name)) continue;
    auto view = store.get(name);
    if (view.ok()) views.push_back(view.value());
  }
  std::map<std::string, const TensorView*> by_name;
  for (const TensorView& v : views) by_name[v.name] = &v;

  std::vector<Unit> units;
  std::map<std::string, bool> in_group;
  for (const TensorView& v : views) {
    const std::vector<std::string> names = fused_group_of(v.name);
    if (names.empty()) continue;
    std::vector<TensorView> parts;
    bool fusable = v.dtype != DType::f8_e4m3 && !v.shape.empty();
    for (const std::string& n : names) {
      auto it = by_name.find(n);
      if (it == by_name.end()) {
        fusable = false;
        break;
      }
      const TensorView& p = *it->second;
      fusable = fusable && p.dtype == v.dtype && p.shape.size() == v.shape.size() &&
                std::equal(p.shape.begin() + 1, p.shape.end(), v.shape.begin() + 1);
      parts.push_back(p);
    }
    if (!fusable) continue;
    for (const std::string& n : names) in_group[n] = true;
    units.push_back(Unit{std::move(parts), load_order_key(v.name)});
  }
  for (const TensorView& v : views)
    if (!in_group.count(v.name)) units.push_back(Unit{{v}, load_order_key(v.name)});
  std::stable_sort(units.begin(), units.end(), [](const Unit& a, const Unit& b) {
    if (a.key < b.key) return true;
    if (b.key < a.key) return false;
    return natural_less(a.views[0].name, b.views[0].name);
  });

  std::vector<ReadAhead::Item> items;
  for (const Unit& unit : units) {
    ReadAhead::Item item;
    item.name = unit.views[0].name;
    item.dtype = unit.views[0].dtype;
    item.shape = unit.views[0].shape;
    const size_t index = items.size();
    bool placed = true;
    int64_t rows = 0;
    for (size_t p = 0; p < unit.views.size(); ++p) {
      const TensorView& v = unit.views[p];
      auto offset = store.offset_in_file(v);
      if (!offset.ok()) {
        placed = false;
        break;
      }
      item.parts.push_back(ReadAhead::Part{v.file, offset.value(), v.nbytes});
      if (p > 0) item.name += " + " + v.name;
      rows += v.shape.empty() ? 1 : v.shape[0];
    }
    if (!placed) continue;  // read when asked; read_into reports the problem
    if (unit.views.size() > 1) {
      item.shape[0] = rows;
      group_sizes_[index] = unit.views.size();
    }
    int64_t row = 0;
    for (const TensorView& v : unit.views) {
      const int64_t r = v.shape.empty() ? 1 : v.shape[0];
      members_[v.name] = Member{index, row, r, unit.views.size() > 1};
      row += r;
      total_bytes_ += v.nbytes;
    }
    items.push_back(std::move(item));
  }
  ahead_ = std::make_unique<ReadAhead>(std::move(items), options);
}

StageReader::~StageReader() = default;  // ~ReadAhead stops and joins its readers

Result<Tensor> StageReader::read(const TensorView& view) {
  auto it = members_.find(view.name);
  if (it == members_.end() || it->second.item >= ahead_->num_items()) {
    Tensor host = Tensor::empty(view.dtype, view.shape);
    TROUPE_TRY(store_.read_into(view, host.raw()));
    return host;
  }
  const Member member = it->second;
  members_.erase(it);  // asked again: read from the file (a part handed out once is not kept)
  if (!member.grouped) return ahead_->take(member.item);
  auto open = open_groups_.find(member.item);
  if (open == open_groups_.end())
    open = open_groups_.emplace(member.item, OpenGroup{ahead_->take(member.item), group_sizes_[member.item]}).first;
  Result<Tensor> part = open->second.tensor.ok()
                            ? Result<Tensor>(open->second.tensor->rows(member.row_begin, member.rows).reshape(view.shape))
                            : Result<Tensor>(open->second.tensor.error());
  if (--open->second.left == 0) open_groups_.erase(open);
  return part;
}

}  // namespace troupe
