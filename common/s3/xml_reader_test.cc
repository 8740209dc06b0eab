#include "common/s3/xml_reader.h"

#include <string>

#include "gtest/gtest.h"

namespace pc::s3 {
namespace {

TEST(XmlReaderTest, ElementsTextAndNamespacesAndPrologue) {
  auto root = ParseXml(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- c -->"
      "<s3:A xmlns:s3=\"http://x/\" b='1'><B>one</B>\n  "
      "<C/><B>two</B></s3:A>\n");
  ASSERT_TRUE(root.ok()) << root.status();
  EXPECT_EQ(root->name, "A");
  ASSERT_EQ(root->children.size(), 3u);
  EXPECT_EQ(root->ChildText("B"), "one");  // the first
  EXPECT_EQ(root->children[2].text, "two");
  EXPECT_NE(root->Child("C"), nullptr);
  EXPECT_EQ(root->Child("D"), nullptr);
  EXPECT_EQ(root->ChildText("D"), "");
}

TEST(XmlReaderTest, EntitiesCdataAndUntrimmedText) {
  auto root = ParseXml(
      "<K> a&amp;b&lt;c&gt;d&quot;e&apos;f&#65;&#x3b1;&#x1F600; "
      "<![CDATA[<raw&>]]><!-- skipped --></K>");
  ASSERT_TRUE(root.ok()) << root.status();
  EXPECT_EQ(root->text, " a&b<c>d\"e'fA\xce\xb1\xf0\x9f\x98\x80 <raw&>");
}

TEST(XmlReaderTest, RejectsMalformedAndDangerousInput) {
  for (const char* bad : {
           "",
           "text",
           "<A>",
           "<A></B>",
           "<A>&unknown;</A>",
           "<A>&#0;</A>",
           "<A>&#xD800;</A>",
           "<A>&#x110000;</A>",
           "<A>&#-5;</A>",
           "<A>&amp</A>",
           "<!DOCTYPE A [<!ENTITY x \"y\">]><A>&x;</A>",
           "<A></A><B></B>",
           "<A b=c></A>",
           "<A><![CDATA[x</A>",
           "<::::/>",
           "<a:></a:>",
       }) {
    EXPECT_FALSE(ParseXml(bad).ok()) << bad;
  }
}

TEST(XmlReaderTest, BoundsDepth) {
  std::string deep;
  for (int i = 0; i < kMaxXmlDepth + 1; ++i) deep += "<a>";
  for (int i = 0; i < kMaxXmlDepth + 1; ++i) deep += "</a>";
  EXPECT_FALSE(ParseXml(deep).ok());
  std::string ok;
  for (int i = 0; i < kMaxXmlDepth; ++i) ok += "<a>";
  for (int i = 0; i < kMaxXmlDepth; ++i) ok += "</a>";
  EXPECT_TRUE(ParseXml(ok).ok());
}

TEST(XmlReaderTest, BoundsElementCount) {
  std::string many = "<a>";
  for (size_t i = 0; i < kMaxXmlElements; ++i) many += "<b/>";
  many += "</a>";
  EXPECT_FALSE(ParseXml(many).ok());
}

}  // namespace
}  // namespace pc::s3
