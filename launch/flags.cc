#include "launch/flags.h"

#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace sb {

absl::StatusOr<Flags> Flags::Parse(const std::vector<std::string>& args,
                                   const std::vector<FlagSpec>& specs) {
  Flags flags;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg.rfind("--", 0) != 0) {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", arg, "'"));
    }
    std::string name = arg.substr(2), value;
    const size_t eq = name.find('=');
    const bool has_inline = eq != std::string::npos;
    if (has_inline) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    const FlagSpec* spec = nullptr;
    for (const FlagSpec& s : specs)
      if (s.name == name) spec = &s;
    if (spec == nullptr) return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    if (spec->is_bool) {
      if (has_inline && value != "true" && value != "false") {
        return absl::InvalidArgumentError(absl::StrCat("--", name, " takes true or false"));
      }
      if (!has_inline) value = "true";
    } else if (!has_inline) {
      if (i + 1 >= args.size() || args[i + 1].rfind("--", 0) == 0) {
        return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
      }
      value = args[++i];
    }
    if (!spec->repeated && flags.values_.count(name)) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, " given twice"));
    }
    flags.values_[name].push_back(value);
  }
  for (const FlagSpec& s : specs) {
    if (s.required && !flags.Has(s.name)) {
      return absl::InvalidArgumentError(absl::StrCat("missing required flag --", s.name));
    }
  }
  return flags;
}

std::string Flags::Get(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second.back();
}

const std::vector<std::string>& Flags::All(const std::string& name) const {
  static const std::vector<std::string> kEmpty;
  auto it = values_.find(name);
  return it == values_.end() ? kEmpty : it->second;
}

absl::StatusOr<int64_t> Flags::GetInt(const std::string& name, int64_t fallback) const {
  if (!Has(name)) return fallback;
  int64_t v;
  if (!absl::SimpleAtoi(Get(name), &v)) {
    return absl::InvalidArgumentError(absl::StrCat("--", name, " wants an integer, got '", Get(name), "'"));
  }
  return v;
}

absl::StatusOr<double> Flags::GetDouble(const std::string& name, double fallback) const {
  if (!Has(name)) return fallback;
  double v;
  if (!absl::SimpleAtod(Get(name), &v)) {
    return absl::InvalidArgumentError(absl::StrCat("--", name, " wants a number, got '", Get(name), "'"));
  }
  return v;
}

std::string FlagsUsage(const std::string& command, const std::vector<FlagSpec>& specs) {
  std::ostringstream s;
  s << "Usage: switchboard " << command << " [flags]\n";
  for (const FlagSpec& f : specs) {
    s << "  --" << f.name << (f.is_bool ? "" : " V") << (f.repeated ? " (repeatable)" : "")
      << (f.required ? " (required)" : "") << "\n      " << f.help << "\n";
  }
  return s.str();
}

}  // namespace sb
