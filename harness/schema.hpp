// A small JSON Schema validator for reports/moba-report.schema.json (our Debian dependencies hold
// no JSON Schema library). It supports exactly the keywords that schema uses, with their draft
// 2020-12 meaning:
//   type (a name or an array of names; "integer" accepts 3.0), enum, const, minimum, minItems,
//   required, properties, additionalProperties (boolean or schema), items (one schema for every
//   element), allOf, if / then / else, $ref to "#/..." pointers inside the same document
//   (siblings of $ref apply too, as in 2020-12).
// Annotations ($schema, $id, $comment, $defs, title, description) are accepted and ignored.
// Any other keyword is refused when the validator is built, so the schema can never silently
// rely on something this file does not check.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace moba {

class SchemaValidator {
public:
    // Throws std::invalid_argument for an unsupported keyword or an unresolvable $ref, naming
    // where in the schema it is.
    explicit SchemaValidator(nlohmann::json schema);
    // Reads and parses the schema file; throws std::runtime_error naming the file.
    static SchemaValidator from_file(const std::filesystem::path& path);

    // One message per violation, each starting with the JSON pointer of the offending value:
    //   "/records/3/outcome: 'fine' is not one of [\"passed\",...]"
    //   "/records/0: required property 'impl' is missing"
    // The document root is written "(root)". Empty when the document is valid.
    std::vector<std::string> validate(const nlohmann::json& document) const;

private:
    void check_schema(const nlohmann::json& schema, const std::string& where) const;
    void validate_at(const nlohmann::json& schema, const nlohmann::json& value,
                     const nlohmann::json::json_pointer& at, std::vector<std::string>& errors,
                     int depth) const;
    nlohmann::json schema_;
};

}  // namespace moba
